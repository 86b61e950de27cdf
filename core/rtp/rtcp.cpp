#include "rtp/rtcp.h"

#include <cstring>

#include "rtp/packet.h"

namespace callbox::rtp {

namespace {

constexpr std::uint8_t kSdesCname = 1;
constexpr std::size_t kBlockSize = 24;

void read_block(const std::uint8_t* p, ReportBlock& b) {
    b.ssrc = load32(p);
    b.fraction_lost = p[4];
    // Sign-extend the 24-bit cumulative count.
    const std::uint32_t raw = load32(p + 4) & 0xFFFFFF;
    b.cumulative_lost = static_cast<std::int32_t>(raw ^ 0x800000) - 0x800000;
    b.extended_highest = load32(p + 8);
    b.jitter = load32(p + 12);
    b.last_sr = load32(p + 16);
    b.delay_since_last_sr = load32(p + 20);
}

void write_block(std::uint8_t* p, const ReportBlock& b) {
    store32(p, b.ssrc);
    store32(p + 4, (std::uint32_t{b.fraction_lost} << 24) |
                       (static_cast<std::uint32_t>(b.cumulative_lost) & 0xFFFFFF));
    store32(p + 8, b.extended_highest);
    store32(p + 12, b.jitter);
    store32(p + 16, b.last_sr);
    store32(p + 20, b.delay_since_last_sr);
}

const char* parse_report(const std::uint8_t* p, std::size_t len, std::uint8_t type,
                         std::size_t count, RtcpReport& out) {
    const std::size_t fixed = type == kRtcpSenderReport ? 28 : 8;
    if (len < fixed + count * kBlockSize) return "report blocks run past the RTCP packet length";
    out.ssrc = load32(p + 4);
    out.has_sender_info = type == kRtcpSenderReport;
    if (out.has_sender_info) {
        out.sender.ntp_timestamp = (std::uint64_t{load32(p + 8)} << 32) | load32(p + 12);
        out.sender.rtp_timestamp = load32(p + 16);
        out.sender.packet_count = load32(p + 20);
        out.sender.octet_count = load32(p + 24);
    }
    out.block_count = count;
    for (std::size_t i = 0; i < count; ++i) read_block(p + fixed + i * kBlockSize, out.blocks[i]);
    return nullptr;
}

const char* parse_sdes(const std::uint8_t* p, std::size_t len, std::size_t chunks, RtcpReport& out) {
    std::size_t offset = 4;
    for (std::size_t c = 0; c < chunks; ++c) {
        if (offset > len || len - offset < 4) return "SDES chunk runs past the RTCP packet length";
        offset += 4;  // chunk SSRC
        while (true) {
            if (offset >= len) return "SDES items run past the RTCP packet length";
            const std::uint8_t item = p[offset];
            if (item == 0) {
                // The item list ends with a null octet, then pads to a 32-bit boundary.
                offset = (offset + 4) & ~std::size_t{3};
                break;
            }
            if (len - offset < 2 || len - offset - 2 < p[offset + 1]) {
                return "SDES item runs past the RTCP packet length";
            }
            const std::size_t item_len = p[offset + 1];
            if (item == kSdesCname && out.cname.empty()) {
                out.cname.assign(reinterpret_cast<const char*>(p + offset + 2), item_len);
            }
            offset += 2 + item_len;
        }
    }
    return nullptr;
}

}  // namespace

const char* parse_rtcp(std::span<const std::uint8_t> bytes, RtcpReport& out) {
    out = RtcpReport{};
    bool any_report = false;
    std::size_t offset = 0;
    if (bytes.size() < 4) return "shorter than an RTCP header";
    while (offset < bytes.size()) {
        const std::uint8_t* p = bytes.data() + offset;
        const std::size_t left = bytes.size() - offset;
        if (left < 4) return "trailing bytes after the last RTCP packet";
        if ((p[0] >> 6) != 2) return "RTCP version is not 2";
        const std::size_t len = (std::size_t{load16(p + 2)} + 1) * 4;
        if (len > left) return "RTCP length field runs past the end of the datagram";
        const std::size_t count = p[0] & 0x1F;
        const std::uint8_t type = p[1];
        const char* error = nullptr;
        if (type == kRtcpSenderReport || type == kRtcpReceiverReport) {
            // A compound carries one report from its sender; a second one is ignored.
            if (!any_report) {
                error = len < 8 ? "RTCP report shorter than its SSRC"
                                : parse_report(p, len, type, count, out);
                any_report = true;
            }
        } else if (type == kRtcpSdes) {
            error = parse_sdes(p, len, count, out);
        } else if (type == kRtcpBye) {
            out.bye = true;
        }
        if (error != nullptr) return error;
        offset += len;
    }
    if (!any_report && !out.bye) return "no sender or receiver report in the RTCP packet";
    return nullptr;
}

std::size_t build_rtcp(std::uint32_t ssrc, const SenderInfo* sender,
                       std::span<const ReportBlock> blocks, std::string_view cname,
                       std::span<std::uint8_t> out) {
    if (blocks.size() > kMaxReportBlocks || cname.size() > 255) return 0;
    const std::size_t report = (sender != nullptr ? 28 : 8) + blocks.size() * kBlockSize;
    // SDES: header, SSRC, CNAME item, then at least one null octet up to a word boundary.
    const std::size_t sdes = (8 + 2 + cname.size() + 4) & ~std::size_t{3};
    if (out.size() < report + sdes) return 0;
    std::uint8_t* p = out.data();
    p[0] = static_cast<std::uint8_t>(0x80 | blocks.size());
    p[1] = sender != nullptr ? kRtcpSenderReport : kRtcpReceiverReport;
    store16(p + 2, static_cast<std::uint16_t>(report / 4 - 1));
    store32(p + 4, ssrc);
    std::size_t offset = 8;
    if (sender != nullptr) {
        store32(p + 8, static_cast<std::uint32_t>(sender->ntp_timestamp >> 32));
        store32(p + 12, static_cast<std::uint32_t>(sender->ntp_timestamp));
        store32(p + 16, sender->rtp_timestamp);
        store32(p + 20, sender->packet_count);
        store32(p + 24, sender->octet_count);
        offset = 28;
    }
    for (const ReportBlock& b : blocks) {
        write_block(p + offset, b);
        offset += kBlockSize;
    }
    std::uint8_t* s = p + offset;
    std::memset(s, 0, sdes);
    s[0] = 0x81;
    s[1] = kRtcpSdes;
    store16(s + 2, static_cast<std::uint16_t>(sdes / 4 - 1));
    store32(s + 4, ssrc);
    s[8] = kSdesCname;
    s[9] = static_cast<std::uint8_t>(cname.size());
    if (!cname.empty()) std::memcpy(s + 10, cname.data(), cname.size());
    return report + sdes;
}

}  // namespace callbox::rtp
