// Sample-rate conversion between the rates the codecs use (8, 16, 48 kHz)
// by a rational polyphase FIR: upsample by L, low-pass, downsample by M,
// computing only the outputs that are kept. The low-pass is a Kaiser-windowed
// sinc with 80 dB stopband attenuation whose passband ends at 87.5% of the
// lower Nyquist frequency (3.5 kHz when 8 kHz is involved).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "codec/codec.h"

namespace callbox::codec {

class Resampler {
public:
    /// Rates must be 8000, 16000 or 48000 (CodecError otherwise).
    Resampler(int in_rate, int out_rate);

    int in_rate() const { return in_rate_; }
    int out_rate() const { return out_rate_; }
    /// Filter delay in output samples (the same for every call).
    int delay() const;

    /// Converts the next piece of a continuous stream. The filter state is
    /// carried over, so pieces of any length join without clicks; a piece
    /// whose length is a multiple of in_rate/gcd gives exactly
    /// length * out_rate / in_rate samples.
    Pcm process(std::span<const std::int16_t> in);

private:
    int in_rate_;
    int out_rate_;
    int up_;                      // L
    int down_;                    // M
    std::size_t taps_per_phase_;  // T: the filter's taps per phase
    std::size_t stride_;          // S: T rounded up to the kernel's width, zero taps first
    std::vector<float> phases_;   // L rows of S taps, each scaled by L
    std::vector<float> buffer_;   // the last S-1 inputs, then the new piece
    long long time_ = 0;          // next output, in upsampled samples from the piece's start
};

}  // namespace callbox::codec
