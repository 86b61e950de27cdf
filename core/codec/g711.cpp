#include "codec/g711.h"

namespace callbox::codec::g711 {

void alaw_encode(const std::int16_t* pcm, std::size_t count, std::uint8_t* out) noexcept {
    for (std::size_t i = 0; i < count; ++i) out[i] = alaw_encode(pcm[i]);
}

void ulaw_encode(const std::int16_t* pcm, std::size_t count, std::uint8_t* out) noexcept {
    for (std::size_t i = 0; i < count; ++i) out[i] = ulaw_encode(pcm[i]);
}

void alaw_decode(const std::uint8_t* codes, std::size_t count, std::int16_t* out) noexcept {
    for (std::size_t i = 0; i < count; ++i) out[i] = alaw_decode(codes[i]);
}

void ulaw_decode(const std::uint8_t* codes, std::size_t count, std::int16_t* out) noexcept {
    for (std::size_t i = 0; i < count; ++i) out[i] = ulaw_decode(codes[i]);
}

}  // namespace callbox::codec::g711
