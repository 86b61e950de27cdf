// RTP packets (RFC 3550 section 5.1): parse and build with bounds checks.
// A parse never reads outside the given bytes; a malformed packet is reported,
// so the caller can count and drop it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace callbox::rtp {

inline constexpr std::size_t kFixedHeaderSize = 12;
inline constexpr std::size_t kMaxCsrc = 15;

// Why a packet was refused; the names are what a counter or an error says.
enum class ParseError {
    none,
    too_short,
    bad_version,
    csrc_overflow,
    extension_overflow,
    bad_padding,
};

const char* describe(ParseError error);

struct Header {
    bool marker = false;
    std::uint8_t payload_type = 0;
    std::uint16_t sequence = 0;
    std::uint32_t timestamp = 0;
    std::uint32_t ssrc = 0;
    std::uint8_t csrc_count = 0;
    std::array<std::uint32_t, kMaxCsrc> csrc{};
    bool has_extension = false;
    std::uint16_t extension_profile = 0;
};

// A parsed packet: the header and where the extension body and payload lie
// inside the original bytes (no copies on the packet path).
struct Packet {
    Header header;
    std::span<const std::uint8_t> extension;
    std::span<const std::uint8_t> payload;
    std::uint8_t padding = 0;
};

ParseError parse(std::span<const std::uint8_t> bytes, Packet& out);

// Bytes a packet with this header, extension body and payload takes.
std::size_t built_size(const Header& header, std::size_t extension_size, std::size_t payload_size);

// Writes the packet into `out` and returns its size, or 0 if `out` is too small
// or the extension body is not a whole number of 32-bit words (RFC 3550 5.3.1).
std::size_t build(const Header& header, std::span<const std::uint8_t> extension,
                  std::span<const std::uint8_t> payload, std::span<std::uint8_t> out);

// Big-endian field access shared by RTP and RTCP.
inline std::uint16_t load16(const std::uint8_t* p) {
    return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
inline std::uint32_t load32(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           std::uint32_t{p[3]};
}
inline void store16(std::uint8_t* p, std::uint16_t v) {
    p[0] = static_cast<std::uint8_t>(v >> 8);
    p[1] = static_cast<std::uint8_t>(v);
}
inline void store32(std::uint8_t* p, std::uint32_t v) {
    p[0] = static_cast<std::uint8_t>(v >> 24);
    p[1] = static_cast<std::uint8_t>(v >> 16);
    p[2] = static_cast<std::uint8_t>(v >> 8);
    p[3] = static_cast<std::uint8_t>(v);
}

}  // namespace callbox::rtp
