// Python bindings of the codecs (core/codec/). Audio crosses as bytes of
// native 16-bit PCM; each call copies its input while holding the GIL and
// releases the GIL for the DSP work.
#include <pybind11/stl.h>

#include <cstring>
#include <string>

#include "bindings.h"
#include "pybuffer.h"
#include "codec/codec.h"
#include "codec/dtmf.h"
#include "codec/g711.h"
#include "codec/resample.h"
#include "codec/telephone_event.h"
#include "codec/tones.h"
#include "codec/transcode.h"

namespace py = pybind11;
namespace g711 = callbox::codec::g711;
namespace codec = callbox::codec;

using callbox::ByteView;
using callbox::pcm_from;
using callbox::whole_samples;

namespace {

codec::Payload payload_from(const py::object& obj) {
    ByteView in(obj);
    return codec::Payload(in.data(), in.data() + in.size());
}

template <typename Vector>
py::bytes to_bytes(const Vector& v) {
    return py::bytes(reinterpret_cast<const char*>(v.data()),
                     static_cast<py::ssize_t>(v.size() * sizeof(typename Vector::value_type)));
}

// Runs ``work`` on the copied input without the GIL and returns bytes.
template <typename In, typename Work>
py::bytes without_gil(const In& in, Work work) {
    decltype(work(in)) out;
    {
        py::gil_scoped_release release;
        out = work(in);
    }
    return to_bytes(out);
}

py::list payload_list(const std::vector<codec::Payload>& payloads) {
    py::list out;
    for (const auto& p : payloads) out.append(to_bytes(p));
    return out;
}

using Encoder = void (*)(const std::int16_t*, std::size_t, std::uint8_t*) noexcept;
using Decoder = void (*)(const std::uint8_t*, std::size_t, std::int16_t*) noexcept;

py::bytes encode_with(Encoder encode, const py::object& pcm) {
    ByteView in(pcm);
    const std::size_t count = whole_samples(in);
    py::bytes out(nullptr, static_cast<py::ssize_t>(count));
    auto* dst = reinterpret_cast<std::uint8_t*>(PyBytes_AS_STRING(out.ptr()));
    {
        py::gil_scoped_release release;
        // Copied in aligned blocks for the same reason as pcm_from().
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

void bind_codecs(py::module_& m) {
    py::class_<codec::CodecInfo>(m, "CodecInfo")
        .def_readonly("name", &codec::CodecInfo::name)
        .def_readonly("rtp_clock_rate", &codec::CodecInfo::rtp_clock_rate)
        .def_readonly("sample_rate", &codec::CodecInfo::sample_rate)
        .def_readonly("frame_ms", &codec::CodecInfo::frame_ms)
        .def_property_readonly("frame_samples", &codec::CodecInfo::frame_samples);

    py::class_<codec::Encoder>(m, "Encoder")
        .def(py::init([](const std::string& name, const std::string& fmtp, int frame_ms) {
                 return codec::make_encoder(name, codec::parse_fmtp(fmtp), frame_ms);
             }),
             py::arg("name"), py::arg("fmtp") = "", py::arg("frame_ms") = 20)
        .def_property_readonly("info", &codec::Encoder::info)
        .def("encode", [](codec::Encoder& e, const py::object& pcm) {
            return without_gil(pcm_from(pcm), [&e](const codec::Pcm& in) { return e.encode(in); });
        });

    py::class_<codec::Decoder>(m, "Decoder")
        .def(py::init([](const std::string& name, const std::string& fmtp, int frame_ms) {
                 return codec::make_decoder(name, codec::parse_fmtp(fmtp), frame_ms);
             }),
             py::arg("name"), py::arg("fmtp") = "", py::arg("frame_ms") = 20)
        .def_property_readonly("info", &codec::Decoder::info)
        .def("decode",
             [](codec::Decoder& d, const py::object& payload) {
                 return without_gil(payload_from(payload),
                                    [&d](const codec::Payload& in) { return d.decode(in); });
             })
        .def("conceal",
             [](codec::Decoder& d) {
                 return without_gil(0, [&d](int) { return d.conceal(); });
             })
        .def("conceal_with_next", [](codec::Decoder& d, const py::object& next) {
            return without_gil(payload_from(next), [&d](const codec::Payload& in) {
                return d.conceal_with_next(in);
            });
        });

    m.def("codec_names", &codec::codec_names);
    m.def("codec_info", [](const std::string& name) { return codec::codec_info(name); });
    m.def("parse_fmtp", [](const std::string& fmtp) { return codec::parse_fmtp(fmtp); });

    py::class_<codec::Resampler>(m, "Resampler")
        .def(py::init<int, int>(), py::arg("in_rate"), py::arg("out_rate"))
        .def_property_readonly("in_rate", &codec::Resampler::in_rate)
        .def_property_readonly("out_rate", &codec::Resampler::out_rate)
        .def_property_readonly("delay", &codec::Resampler::delay)
        .def("process", [](codec::Resampler& r, const py::object& pcm) {
            return without_gil(pcm_from(pcm), [&r](const codec::Pcm& in) { return r.process(in); });
        });

    py::class_<codec::Transcoder>(m, "Transcoder")
        .def(py::init([](const std::string& from, const std::string& from_fmtp,
                         const std::string& to, const std::string& to_fmtp, int to_frame_ms) {
                 return std::make_unique<codec::Transcoder>(
                     codec::make_decoder(from, codec::parse_fmtp(from_fmtp)),
                     codec::make_encoder(to, codec::parse_fmtp(to_fmtp), to_frame_ms));
             }),
             py::arg("source"), py::arg("source_fmtp"), py::arg("target"), py::arg("target_fmtp"),
             py::arg("target_frame_ms"))
        .def("transcode",
             [](codec::Transcoder& t, const py::object& payload) {
                 const codec::Payload in = payload_from(payload);
                 std::vector<codec::Payload> out;
                 {
                     py::gil_scoped_release release;
                     out = t.transcode(in);
                 }
                 return payload_list(out);
             })
        .def("transcode_lost", [](codec::Transcoder& t) {
            std::vector<codec::Payload> out;
            {
                py::gil_scoped_release release;
                out = t.transcode_lost();
            }
            return payload_list(out);
        });
}

void bind_events_and_tones(py::module_& m) {
    m.def("telephone_event_encode",
          [](int event, bool end, int volume, int duration) {
              if (event < 0 || event > 255 || volume < 0 || volume > 63 || duration < 0 ||
                  duration > 0xFFFF) {
                  throw codec::CodecError(
                      "telephone-event fields out of range: event 0-255, volume 0-63, "
                      "duration 0-65535");
              }
              const codec::TelephoneEvent e{static_cast<std::uint8_t>(event), end,
                                            static_cast<std::uint8_t>(volume),
                                            static_cast<std::uint16_t>(duration)};
              return to_bytes(e.encode());
          });
    m.def("telephone_event_decode", [](const py::object& payload) {
        const auto e = codec::TelephoneEvent::decode(payload_from(payload));
        return py::make_tuple(e.event, e.end, e.volume, e.duration);
    });
    m.def("dtmf_event", &codec::dtmf_event);
    m.def("dtmf_digit", &codec::dtmf_digit);

    py::class_<codec::TelephoneEventSender>(m, "TelephoneEventSender")
        .def(py::init<int, int>(), py::arg("clock_rate"), py::arg("packet_ms"))
        .def("start", &codec::TelephoneEventSender::start)
        .def_property_readonly("busy", &codec::TelephoneEventSender::busy)
        .def("next", [](codec::TelephoneEventSender& s) -> py::object {
            const auto packet = s.next();
            if (!packet) return py::none();
            return py::make_tuple(packet->marker, packet->timestamp, to_bytes(packet->payload));
        });

    py::class_<codec::TelephoneEventReceiver>(m, "TelephoneEventReceiver")
        .def(py::init<>())
        .def("receive",
             [](codec::TelephoneEventReceiver& r, std::uint32_t timestamp,
                const py::object& payload) -> py::object {
                 const auto event = r.receive(timestamp, payload_from(payload));
                 if (!event) return py::none();
                 return py::make_tuple(event->event, event->timestamp, event->volume);
             });

    py::class_<codec::DtmfDetector>(m, "DtmfDetector")
        .def(py::init<int, int, int>(), py::arg("twist"), py::arg("reverse_twist"),
             py::arg("min_level_dbm0"))
        .def("process",
             [](codec::DtmfDetector& d, const py::object& pcm) {
                 const codec::Pcm in = pcm_from(pcm);
                 py::gil_scoped_release release;
                 return d.process(in);
             })
        .def("skip", &codec::DtmfDetector::skip);

    py::class_<codec::DtmfGenerator>(m, "DtmfGenerator")
        .def(py::init<int, int, int, int>(), py::arg("level_dbm0"), py::arg("twist"),
             py::arg("on_ms"), py::arg("off_ms"))
        .def("queue", &codec::DtmfGenerator::queue)
        .def_property_readonly("busy", &codec::DtmfGenerator::busy)
        .def("generate", [](codec::DtmfGenerator& g, std::size_t samples) {
            return without_gil(samples, [&g](std::size_t n) { return g.generate(n); });
        });

    py::class_<codec::ToneGenerator>(m, "ToneGenerator")
        .def(py::init([](const std::string& plan, const std::string& tone) {
                 return std::make_unique<codec::ToneGenerator>(codec::tone_spec(plan, tone));
             }),
             py::arg("plan"), py::arg("tone"))
        .def("generate", [](codec::ToneGenerator& g, std::size_t samples) {
            return without_gil(samples, [&g](std::size_t n) { return g.generate(n); });
        });
    m.def("tone_plans", &codec::tone_plans);
    m.def("tone_names", &codec::tone_names);
    m.def("tone_spec", [](const std::string& plan, const std::string& tone) {
        const auto s = codec::tone_spec(plan, tone);
        return py::make_tuple(s.frequency1, s.frequency2, s.level_dbm0, s.on_ms, s.off_ms);
    });
}

}  // namespace

namespace callbox::bindings {

void bind_codec(py::module_& m) {
    // Bad arguments from Python surface as ValueError subclasses naming the problem.
    py::register_exception<codec::CodecError>(m, "CodecError", PyExc_ValueError);
    m.def("alaw_encode", [](const py::object& pcm) { return encode_with(g711::alaw_encode, pcm); });
    m.def("ulaw_encode", [](const py::object& pcm) { return encode_with(g711::ulaw_encode, pcm); });
    m.def("alaw_decode", [](const py::object& c) { return decode_with(g711::alaw_decode, c); });
    m.def("ulaw_decode", [](const py::object& c) { return decode_with(g711::ulaw_decode, c); });
    bind_codecs(m);
    bind_events_and_tones(m);
}

}  // namespace callbox::bindings
