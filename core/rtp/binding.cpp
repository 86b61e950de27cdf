// Python bindings of the RTP/RTCP packet layer, the receive statistics and the
// E-model (core/rtp/). Values cross as tuples; core/__init__.py names them.
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings.h"
#include "pybuffer.h"
#include "rtp/emodel.h"
#include "rtp/packet.h"
#include "rtp/rtcp.h"
#include "rtp/stats.h"

namespace py = pybind11;
namespace rtp = callbox::rtp;

using callbox::ByteView;

namespace {

py::bytes to_bytes(std::span<const std::uint8_t> s) {
    return {reinterpret_cast<const char*>(s.data()), s.size()};
}

py::tuple parse_rtp(const py::object& data) {
    ByteView in(data);
    rtp::Packet packet;
    const rtp::ParseError error = parse({in.data(), in.size()}, packet);
    if (error != rtp::ParseError::none) {
        throw py::value_error(std::string("malformed RTP packet: ") + rtp::describe(error));
    }
    const rtp::Header& h = packet.header;
    py::tuple csrc(h.csrc_count);
    for (std::size_t i = 0; i < h.csrc_count; ++i) csrc[i] = h.csrc[i];
    py::object extension = py::none();
    if (h.has_extension) extension = py::make_tuple(h.extension_profile, to_bytes(packet.extension));
    return py::make_tuple(h.marker, h.payload_type, h.sequence, h.timestamp, h.ssrc, csrc, extension,
                          to_bytes(packet.payload), packet.padding);
}

void check_range(long long value, long long high, const char* name) {
    if (value < 0 || value > high) {
        throw py::value_error(std::string(name) + " must be in 0.." + std::to_string(high) + ": got " +
                              std::to_string(value));
    }
}

py::bytes build_rtp(long long payload_type, long long sequence, long long timestamp, long long ssrc,
                    const py::object& payload, bool marker, const std::vector<long long>& csrc,
                    const py::object& extension) {
    check_range(payload_type, 127, "payload_type");
    check_range(sequence, 0xFFFF, "sequence");
    check_range(timestamp, 0xFFFFFFFFLL, "timestamp");
    check_range(ssrc, 0xFFFFFFFFLL, "ssrc");
    if (csrc.size() > rtp::kMaxCsrc) {
        throw py::value_error("at most 15 CSRCs fit an RTP header: got " + std::to_string(csrc.size()));
    }
    rtp::Header h;
    h.marker = marker;
    h.payload_type = static_cast<std::uint8_t>(payload_type);
    h.sequence = static_cast<std::uint16_t>(sequence);
    h.timestamp = static_cast<std::uint32_t>(timestamp);
    h.ssrc = static_cast<std::uint32_t>(ssrc);
    h.csrc_count = static_cast<std::uint8_t>(csrc.size());
    for (std::size_t i = 0; i < csrc.size(); ++i) {
        check_range(csrc[i], 0xFFFFFFFFLL, "csrc");
        h.csrc[i] = static_cast<std::uint32_t>(csrc[i]);
    }
    ByteView body(payload);
    std::string ext_body;
    if (!extension.is_none()) {
        auto [profile, ext] = extension.cast<std::pair<long long, py::object>>();
        check_range(profile, 0xFFFF, "extension profile");
        ByteView ext_view(ext);
        if (ext_view.size() % 4 != 0) {
            throw py::value_error("RTP header extension must be whole 32-bit words: got " +
                                  std::to_string(ext_view.size()) + " bytes");
        }
        h.has_extension = true;
        h.extension_profile = static_cast<std::uint16_t>(profile);
        ext_body.assign(reinterpret_cast<const char*>(ext_view.data()), ext_view.size());
    }
    const std::span<const std::uint8_t> ext_span(reinterpret_cast<const std::uint8_t*>(ext_body.data()),
                                                 ext_body.size());
    std::vector<std::uint8_t> out(rtp::built_size(h, ext_span.size(), body.size()));
    rtp::build(h, ext_span, {body.data(), body.size()}, out);
    return to_bytes(out);
}

py::tuple snapshot_tuple(const rtp::ReceiveSnapshot& s) {
    return py::make_tuple(s.extended_highest, s.expected, s.received, s.lost, s.jitter, s.duplicates,
                          s.reordered, s.validated);
}

py::tuple block_tuple(const rtp::ReportBlock& b) {
    return py::make_tuple(b.ssrc, b.fraction_lost, b.cumulative_lost, b.extended_highest, b.jitter,
                          b.last_sr, b.delay_since_last_sr);
}

py::tuple parse_rtcp(const py::object& data) {
    ByteView in(data);
    rtp::RtcpReport report;
    if (const char* error = rtp::parse_rtcp({in.data(), in.size()}, report)) {
        throw py::value_error(std::string("malformed RTCP packet: ") + error);
    }
    py::object sender = py::none();
    if (report.has_sender_info) {
        const rtp::SenderInfo& s = report.sender;
        sender = py::make_tuple(s.ntp_timestamp, s.rtp_timestamp, s.packet_count, s.octet_count);
    }
    py::list blocks;
    for (std::size_t i = 0; i < report.block_count; ++i) blocks.append(block_tuple(report.blocks[i]));
    return py::make_tuple(report.ssrc, sender, blocks, py::bytes(report.cname), report.bye);
}

using BlockTuple = std::tuple<std::uint32_t, std::uint8_t, std::int32_t, std::uint32_t, std::uint32_t,
                              std::uint32_t, std::uint32_t>;
using SenderTuple = std::tuple<std::uint64_t, std::uint32_t, std::uint32_t, std::uint32_t>;

py::bytes build_rtcp(std::uint32_t ssrc, const std::optional<SenderTuple>& sender,
                     const std::vector<BlockTuple>& blocks, const py::object& cname) {
    if (blocks.size() > rtp::kMaxReportBlocks) {
        throw py::value_error("at most 31 report blocks fit an RTCP report: got " +
                              std::to_string(blocks.size()));
    }
    ByteView name(cname);
    if (name.size() > 255) {
        throw py::value_error("CNAME must be at most 255 bytes: got " + std::to_string(name.size()));
    }
    std::vector<rtp::ReportBlock> report(blocks.size());
    for (std::size_t i = 0; i < blocks.size(); ++i) {
        rtp::ReportBlock& b = report[i];
        std::tie(b.ssrc, b.fraction_lost, b.cumulative_lost, b.extended_highest, b.jitter, b.last_sr,
                 b.delay_since_last_sr) = blocks[i];
        if (b.cumulative_lost < -0x800000 || b.cumulative_lost > 0x7FFFFF) {
            throw py::value_error("cumulative_lost must fit 24 bits signed: got " +
                                  std::to_string(b.cumulative_lost));
        }
    }
    rtp::SenderInfo info;
    if (sender) std::tie(info.ntp_timestamp, info.rtp_timestamp, info.packet_count, info.octet_count) = *sender;
    std::vector<std::uint8_t> out(rtp::kMaxRtcpSize);
    const std::size_t size =
        rtp::build_rtcp(ssrc, sender ? &info : nullptr, report,
                        {reinterpret_cast<const char*>(name.data()), name.size()}, out);
    return to_bytes(std::span(out).first(size));
}

py::tuple e_model(double delay_ms, double loss_percent, const std::string& codec) {
    const rtp::CodecImpairment* impairment = rtp::codec_impairment(codec);
    if (impairment == nullptr) throw py::value_error("no E-model values for codec '" + codec + "'");
    const rtp::Quality q = rtp::e_model(delay_ms, loss_percent, *impairment);
    return py::make_tuple(q.r_factor, q.mos);
}

}  // namespace

namespace callbox::bindings {

void bind_rtp(py::module_& m) {
    m.def("parse_rtp", &parse_rtp);
    m.def("build_rtp", &build_rtp, py::arg("payload_type"), py::arg("sequence"), py::arg("timestamp"),
          py::arg("ssrc"), py::arg("payload"), py::arg("marker") = false,
          py::arg("csrc") = std::vector<long long>{}, py::arg("extension") = py::none());
    m.def("parse_rtcp", &parse_rtcp);
    m.def("build_rtcp", &build_rtcp, py::arg("ssrc"), py::arg("sender"), py::arg("blocks"),
          py::arg("cname"));
    m.def("e_model", &e_model);
    py::class_<rtp::ReceiveStats>(m, "ReceiveStats")
        .def(py::init<>())
        .def("update",
             [](rtp::ReceiveStats& s, std::uint16_t seq, std::uint32_t ts, std::uint32_t arrival) {
                 return static_cast<int>(s.update(seq, ts, arrival));
             })
        .def("snapshot", [](const rtp::ReceiveStats& s) { return snapshot_tuple(s.snapshot()); })
        .def("report", [](rtp::ReceiveStats& s) {
            const rtp::LossReport r = s.report();
            return py::make_tuple(r.fraction_lost, r.cumulative_lost, r.extended_highest, r.jitter);
        });
}

}  // namespace callbox::bindings
