// Helpers shared by the binding files.
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace callbox {

// A contiguous read-only view of any object that supports the buffer protocol.
class ByteView {
public:
    explicit ByteView(const pybind11::object& obj) {
        if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_SIMPLE) != 0) throw pybind11::error_already_set();
    }
    ~ByteView() { PyBuffer_Release(&view_); }
    ByteView(const ByteView&) = delete;
    ByteView& operator=(const ByteView&) = delete;

    const std::uint8_t* data() const { return static_cast<const std::uint8_t*>(view_.buf); }
    std::size_t size() const { return static_cast<std::size_t>(view_.len); }

private:
    Py_buffer view_{};
};

// The number of 16-bit samples in `in`; an odd length is a ValueError.
inline std::size_t whole_samples(const ByteView& in) {
    if (in.size() % 2 != 0) {
        throw pybind11::value_error("PCM input must be whole 16-bit samples: got " + std::to_string(in.size()) +
                                    " bytes (an odd length)");
    }
    return in.size() / 2;
}

// 16-bit PCM from any bytes-like object. The input may be unaligned, so it is copied.
inline std::vector<std::int16_t> pcm_from(const pybind11::object& obj) {
    ByteView in(obj);
    std::vector<std::int16_t> pcm(whole_samples(in));
    if (!pcm.empty()) std::memcpy(pcm.data(), in.data(), pcm.size() * 2);
    return pcm;
}

}  // namespace callbox
