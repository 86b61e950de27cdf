// G.711 A-law and u-law (ITU-T G.711), table driven.
//
// The encoders follow the classic Sun reference (the one CPython's audioop
// uses): 16-bit linear PCM is reduced to 13 bits (A-law) or 14 bits (u-law)
// and mapped through a segment search. Here the search is done once, at
// compile time, into lookup tables indexed by the reduced sample, so the
// per-sample cost on the packet path is one load.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace callbox::codec::g711 {

namespace detail {

constexpr std::array<int, 8> kAlawSegmentEnd{0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF};
constexpr std::array<int, 8> kUlawSegmentEnd{0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF};
constexpr int kUlawBias = 0x84;
constexpr int kUlawClip = 8159;  // largest 14-bit magnitude u-law can represent

constexpr int segment(int value, const std::array<int, 8>& ends) {
    for (int i = 0; i < 8; ++i) {
        if (value <= ends[static_cast<std::size_t>(i)]) return i;
    }
    return 8;
}

// pcm13: a 13-bit two's complement sample (16-bit sample >> 3).
constexpr std::uint8_t alaw_from_13bit(int pcm13) {
    int mask = 0xD5;  // even-bit inversion, sign bit set for positive values
    if (pcm13 < 0) {
        mask = 0x55;
        pcm13 = -pcm13 - 1;
    }
    const int seg = segment(pcm13, kAlawSegmentEnd);
    if (seg >= 8) return static_cast<std::uint8_t>(0x7F ^ mask);
    int aval = seg << 4;
    aval |= (seg < 2 ? (pcm13 >> 1) : (pcm13 >> seg)) & 0x0F;
    return static_cast<std::uint8_t>(aval ^ mask);
}

// pcm14: a 14-bit two's complement sample (16-bit sample >> 2).
constexpr std::uint8_t ulaw_from_14bit(int pcm14) {
    int mask = 0xFF;  // u-law inverts all bits
    if (pcm14 < 0) {
        pcm14 = -pcm14;
        mask = 0x7F;
    }
    if (pcm14 > kUlawClip) pcm14 = kUlawClip;
    pcm14 += kUlawBias >> 2;
    const int seg = segment(pcm14, kUlawSegmentEnd);
    if (seg >= 8) return static_cast<std::uint8_t>(0x7F ^ mask);
    const int uval = (seg << 4) | ((pcm14 >> (seg + 1)) & 0x0F);
    return static_cast<std::uint8_t>(uval ^ mask);
}

constexpr std::int16_t alaw_to_linear(std::uint8_t code) {
    const int a = code ^ 0x55;
    int t = (a & 0x0F) << 4;
    const int seg = (a & 0x70) >> 4;
    if (seg == 0) {
        t += 8;
    } else {
        t += 0x108;
        t <<= seg - 1;
    }
    return static_cast<std::int16_t>((a & 0x80) ? t : -t);
}

constexpr std::int16_t ulaw_to_linear(std::uint8_t code) {
    const int u = ~code & 0xFF;
    int t = ((u & 0x0F) << 3) + kUlawBias;
    t <<= (u & 0x70) >> 4;
    return static_cast<std::int16_t>((u & 0x80) ? (kUlawBias - t) : (t - kUlawBias));
}

template <std::size_t Bits, typename F>
constexpr auto make_encode_table(F encode) {
    // Index: the reduced sample as an unsigned Bits-wide value.
    std::array<std::uint8_t, (1u << Bits)> table{};
    for (std::size_t i = 0; i < table.size(); ++i) {
        const int value = static_cast<int>(i) - ((i & (1u << (Bits - 1))) ? (1 << Bits) : 0);
        table[i] = encode(value);
    }
    return table;
}

template <typename F>
constexpr auto make_decode_table(F decode) {
    std::array<std::int16_t, 256> table{};
    for (std::size_t i = 0; i < table.size(); ++i) table[i] = decode(static_cast<std::uint8_t>(i));
    return table;
}

inline constexpr auto kAlawEncode = make_encode_table<13>(alaw_from_13bit);
inline constexpr auto kUlawEncode = make_encode_table<14>(ulaw_from_14bit);
inline constexpr auto kAlawDecode = make_decode_table(alaw_to_linear);
inline constexpr auto kUlawDecode = make_decode_table(ulaw_to_linear);

}  // namespace detail

/// One 16-bit linear sample to an A-law code.
constexpr std::uint8_t alaw_encode(std::int16_t sample) {
    return detail::kAlawEncode[static_cast<std::uint16_t>(sample) >> 3];
}

/// One 16-bit linear sample to a u-law code.
constexpr std::uint8_t ulaw_encode(std::int16_t sample) {
    return detail::kUlawEncode[static_cast<std::uint16_t>(sample) >> 2];
}

/// One A-law code to a 16-bit linear sample.
constexpr std::int16_t alaw_decode(std::uint8_t code) { return detail::kAlawDecode[code]; }

/// One u-law code to a 16-bit linear sample.
constexpr std::int16_t ulaw_decode(std::uint8_t code) { return detail::kUlawDecode[code]; }

/// Encodes ``count`` samples; ``out`` holds ``count`` bytes.
void alaw_encode(const std::int16_t* pcm, std::size_t count, std::uint8_t* out) noexcept;
void ulaw_encode(const std::int16_t* pcm, std::size_t count, std::uint8_t* out) noexcept;

/// Decodes ``count`` codes; ``out`` holds ``count`` samples.
void alaw_decode(const std::uint8_t* codes, std::size_t count, std::int16_t* out) noexcept;
void ulaw_decode(const std::uint8_t* codes, std::size_t count, std::int16_t* out) noexcept;

using BlockEncode = void (*)(const std::int16_t*, std::size_t, std::uint8_t*) noexcept;
using BlockDecode = void (*)(const std::uint8_t*, std::size_t, std::int16_t*) noexcept;

/// The block encoder and decoder of A-law (PCMA) or u-law (PCMU).
inline BlockEncode block_encoder(bool alaw) {
    return alaw ? static_cast<BlockEncode>(alaw_encode) : static_cast<BlockEncode>(ulaw_encode);
}
inline BlockDecode block_decoder(bool alaw) {
    return alaw ? static_cast<BlockDecode>(alaw_decode) : static_cast<BlockDecode>(ulaw_decode);
}

}  // namespace callbox::codec::g711
