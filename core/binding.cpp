// The private extension module behind ``import core``: a thin pybind11 layer.
// Argument checks that need Python's view of the data live here; the public
// surface, docstrings and types are in core/__init__.py and core/_core.pyi.
#include <pybind11/pybind11.h>

#include <lame/lame.h>
#include <opus/opus.h>
#include <spandsp/version.h>
#include <srtp2/srtp.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "codec/g711.h"

namespace py = pybind11;
namespace g711 = callbox::codec::g711;

namespace {

// A contiguous read-only view of any object that supports the buffer protocol.
class ByteView {
public:
    explicit ByteView(const py::object& obj) {
        if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_SIMPLE) != 0) throw py::error_already_set();
    }
    ~ByteView() { PyBuffer_Release(&view_); }
    ByteView(const ByteView&) = delete;
    ByteView& operator=(const ByteView&) = delete;

    const std::uint8_t* data() const { return static_cast<const std::uint8_t*>(view_.buf); }
    std::size_t size() const { return static_cast<std::size_t>(view_.len); }

private:
    Py_buffer view_{};
};

using Encoder = void (*)(const std::int16_t*, std::size_t, std::uint8_t*) noexcept;
using Decoder = void (*)(const std::uint8_t*, std::size_t, std::int16_t*) noexcept;

py::bytes encode_with(Encoder encode, const py::object& pcm) {
    ByteView in(pcm);
    if (in.size() % 2 != 0) {
        throw py::value_error("PCM input must be whole 16-bit samples: got " +
                              std::to_string(in.size()) + " bytes (an odd length)");
    }
    const std::size_t count = in.size() / 2;
    py::bytes out(nullptr, static_cast<py::ssize_t>(count));
    auto* dst = reinterpret_cast<std::uint8_t*>(PyBytes_AS_STRING(out.ptr()));
    {
        py::gil_scoped_release release;
        // The input may be unaligned (any bytes-like object): copy in aligned blocks.
        std::int16_t block[1024];
        for (std::size_t done = 0; done < count;) {
            const std::size_t n = std::min(count - done, std::size(block));
            std::memcpy(block, in.data() + done * 2, n * 2);
            encode(block, n, dst + done);
            done += n;
        }
    }
    return out;
}

py::bytes decode_with(Decoder decode, const py::object& codes) {
    ByteView in(codes);
    const std::size_t count = in.size();
    py::bytes out(nullptr, static_cast<py::ssize_t>(count * 2));
    char* dst = PyBytes_AS_STRING(out.ptr());
    {
        py::gil_scoped_release release;
        std::int16_t block[1024];
        for (std::size_t done = 0; done < count;) {
            const std::size_t n = std::min(count - done, std::size(block));
            decode(in.data() + done, n, block);
            std::memcpy(dst + done * 2, block, n * 2);
            done += n;
        }
    }
    return out;
}

py::dict library_versions() {
    py::dict versions;
    versions["opus"] = opus_get_version_string();
    versions["lame"] = std::string(get_lame_version());
    versions["libsrtp2"] = srtp_get_version_string();
    // spandsp and bcg729 have no runtime version call: report what we built against.
    versions["spandsp"] = CALLBOX_PKG_SPANDSP_VERSION " (" SPANDSP_RELEASE_DATETIME_STRING ")";
    versions["bcg729"] = CALLBOX_PKG_LIBBCG729_VERSION;
    return versions;
}

}  // namespace

PYBIND11_MODULE(CALLBOX_CORE_MODULE, m) {
    m.doc() = "Callbox media core (private; use the public 'core' package).";
    m.def("alaw_encode", [](const py::object& pcm) { return encode_with(g711::alaw_encode, pcm); });
    m.def("ulaw_encode", [](const py::object& pcm) { return encode_with(g711::ulaw_encode, pcm); });
    m.def("alaw_decode", [](const py::object& c) { return decode_with(g711::alaw_decode, c); });
    m.def("ulaw_decode", [](const py::object& c) { return decode_with(g711::ulaw_decode, c); });
    m.def("library_versions", &library_versions);
}
