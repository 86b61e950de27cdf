#include "rtp/packet.h"

#include <cstring>

namespace callbox::rtp {

const char* describe(ParseError error) {
    switch (error) {
        case ParseError::none: return "ok";
        case ParseError::too_short: return "shorter than the 12-byte RTP header";
        case ParseError::bad_version: return "RTP version is not 2";
        case ParseError::csrc_overflow: return "CSRC list runs past the end of the packet";
        case ParseError::extension_overflow: return "header extension runs past the end of the packet";
        case ParseError::bad_padding: return "padding count is zero or larger than the payload";
    }
    return "unknown";
}

ParseError parse(std::span<const std::uint8_t> bytes, Packet& out) {
    const std::size_t size = bytes.size();
    if (size < kFixedHeaderSize) return ParseError::too_short;
    const std::uint8_t* p = bytes.data();
    if ((p[0] >> 6) != 2) return ParseError::bad_version;
    const bool padded = (p[0] & 0x20) != 0;
    Header& h = out.header;
    h.has_extension = (p[0] & 0x10) != 0;
    h.csrc_count = p[0] & 0x0F;
    h.marker = (p[1] & 0x80) != 0;
    h.payload_type = p[1] & 0x7F;
    h.sequence = load16(p + 2);
    h.timestamp = load32(p + 4);
    h.ssrc = load32(p + 8);
    std::size_t offset = kFixedHeaderSize;
    if (size - offset < std::size_t{h.csrc_count} * 4) return ParseError::csrc_overflow;
    for (std::size_t i = 0; i < h.csrc_count; ++i, offset += 4) h.csrc[i] = load32(p + offset);
    out.extension = {};
    h.extension_profile = 0;
    if (h.has_extension) {
        if (size - offset < 4) return ParseError::extension_overflow;
        h.extension_profile = load16(p + offset);
        const std::size_t words = load16(p + offset + 2);
        offset += 4;
        if (size - offset < words * 4) return ParseError::extension_overflow;
        out.extension = bytes.subspan(offset, words * 4);
        offset += words * 4;
    }
    std::size_t end = size;
    out.padding = 0;
    if (padded) {
        // The last octet counts the padding, itself included (RFC 3550 5.1).
        const std::uint8_t count = p[size - 1];
        if (count == 0 || count > size - offset) return ParseError::bad_padding;
        out.padding = count;
        end -= count;
    }
    out.payload = bytes.subspan(offset, end - offset);
    return ParseError::none;
}

std::size_t built_size(const Header& header, std::size_t extension_size, std::size_t payload_size) {
    const std::size_t ext = header.has_extension ? 4 + extension_size : 0;
    return kFixedHeaderSize + std::size_t{header.csrc_count} * 4 + ext + payload_size;
}

std::size_t build(const Header& header, std::span<const std::uint8_t> extension,
                  std::span<const std::uint8_t> payload, std::span<std::uint8_t> out) {
    if (header.csrc_count > kMaxCsrc || extension.size() % 4 != 0 ||
        extension.size() / 4 > 0xFFFF || (!header.has_extension && !extension.empty())) {
        return 0;
    }
    const std::size_t size = built_size(header, extension.size(), payload.size());
    if (out.size() < size) return 0;
    std::uint8_t* p = out.data();
    p[0] = static_cast<std::uint8_t>(0x80 | (header.has_extension ? 0x10 : 0) | header.csrc_count);
    p[1] = static_cast<std::uint8_t>((header.marker ? 0x80 : 0) | (header.payload_type & 0x7F));
    store16(p + 2, header.sequence);
    store32(p + 4, header.timestamp);
    store32(p + 8, header.ssrc);
    std::size_t offset = kFixedHeaderSize;
    for (std::size_t i = 0; i < header.csrc_count; ++i, offset += 4) store32(p + offset, header.csrc[i]);
    if (header.has_extension) {
        store16(p + offset, header.extension_profile);
        store16(p + offset + 2, static_cast<std::uint16_t>(extension.size() / 4));
        offset += 4;
        if (!extension.empty()) std::memcpy(p + offset, extension.data(), extension.size());
        offset += extension.size();
    }
    if (!payload.empty()) std::memcpy(p + offset, payload.data(), payload.size());
    return size;
}

}  // namespace callbox::rtp
