// Python bindings of the codecs (core/codec/).
#include <cstring>
#include <string>

#include "bindings.h"
#include "pybuffer.h"
#include "codec/g711.h"

namespace py = pybind11;
namespace g711 = callbox::codec::g711;

using callbox::ByteView;

namespace {


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

}  // namespace

namespace callbox::bindings {

void bind_codec(py::module_& m) {
    m.def("alaw_encode", [](const py::object& pcm) { return encode_with(g711::alaw_encode, pcm); });
    m.def("ulaw_encode", [](const py::object& pcm) { return encode_with(g711::ulaw_encode, pcm); });
    m.def("alaw_decode", [](const py::object& c) { return decode_with(g711::alaw_decode, c); });
    m.def("ulaw_decode", [](const py::object& c) { return decode_with(g711::ulaw_decode, c); });
}

}  // namespace callbox::bindings
