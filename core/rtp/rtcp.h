// RTCP sender and receiver reports (RFC 3550 section 6.4) with the SDES CNAME
// every compound packet carries (6.1), and BYE detection. Parsing walks a
// compound packet with bounds checks and refuses any malformed part.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace callbox::rtp {

inline constexpr std::uint8_t kRtcpSenderReport = 200;
inline constexpr std::uint8_t kRtcpReceiverReport = 201;
inline constexpr std::uint8_t kRtcpSdes = 202;
inline constexpr std::uint8_t kRtcpBye = 203;
inline constexpr std::size_t kMaxReportBlocks = 31;

struct SenderInfo {
    std::uint64_t ntp_timestamp = 0;  // 32.32 fixed point seconds since 1900
    std::uint32_t rtp_timestamp = 0;
    std::uint32_t packet_count = 0;
    std::uint32_t octet_count = 0;
};

struct ReportBlock {
    std::uint32_t ssrc = 0;
    std::uint8_t fraction_lost = 0;
    std::int32_t cumulative_lost = 0;  // 24-bit signed on the wire
    std::uint32_t extended_highest = 0;
    std::uint32_t jitter = 0;
    std::uint32_t last_sr = 0;        // middle 32 bits of the last SR's NTP time
    std::uint32_t delay_since_last_sr = 0;  // 1/65536 s
};

struct RtcpReport {
    std::uint32_t ssrc = 0;
    bool has_sender_info = false;
    SenderInfo sender;
    std::size_t block_count = 0;
    std::array<ReportBlock, kMaxReportBlocks> blocks{};
    std::string cname;
    bool bye = false;
};

// Returns nullptr on success, else what is wrong with the packet.
const char* parse_rtcp(std::span<const std::uint8_t> bytes, RtcpReport& out);

// Builds SR (if `sender` is given) or RR, then SDES CNAME. Returns the size
// written, or 0 if `out` is too small or the arguments do not fit the format.
std::size_t build_rtcp(std::uint32_t ssrc, const SenderInfo* sender,
                       std::span<const ReportBlock> blocks, std::string_view cname,
                       std::span<std::uint8_t> out);

// Largest compound build_rtcp writes: SR with 31 blocks plus a 255-byte CNAME.
inline constexpr std::size_t kMaxRtcpSize = 28 + 24 * kMaxReportBlocks + 8 + 2 + 255 + 4;

}  // namespace callbox::rtp
