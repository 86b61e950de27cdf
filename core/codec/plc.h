// Packet-loss concealment for codecs without their own (G.711, G.722), after
// ITU-T G.711 Appendix I: on a loss, find the pitch period of the recent
// audio, repeat that period (its join smoothed by overlap-add), fade it out
// from 10 ms to 60 ms into the loss, and cross-fade into the first good
// audio afterwards. Unlike Appendix I it adds no algorithmic delay and keeps
// one pitch period throughout a loss.
//
// Our own rather than spandsp's plc_fillin, which copies between overlapping
// buffers with memcpy (undefined behaviour that AddressSanitizer reports).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "codec/codec.h"

namespace callbox::codec {

class PitchConcealer {
public:
    /// sample_rate: 8000 or 16000; the pitch search covers 66-200 Hz voices.
    explicit PitchConcealer(int sample_rate);

    /// Records good audio as history. After a loss it cross-fades the start
    /// of ``pcm`` from the concealment, so it may change samples in place.
    void observe(std::span<std::int16_t> pcm);

    /// ``samples`` of synthetic audio continuing the history.
    Pcm fill(std::size_t samples);

private:
    std::size_t find_pitch() const;
    float next_synthetic();

    std::size_t pitch_min_;
    std::size_t pitch_max_;
    std::size_t correlation_length_;
    std::size_t fade_in_;         // samples of full-level concealment (10 ms)
    std::size_t fade_out_;        // samples over which it fades to silence (50 ms)
    std::size_t recovery_;        // cross-fade into good audio (4 ms)
    std::vector<float> history_;  // the most recent good audio, oldest first
    std::vector<float> period_;   // one pitch period, its wrap-around smoothed
    std::size_t position_ = 0;    // next sample of period_
    std::size_t concealed_ = 0;   // samples concealed in the current loss
};

}  // namespace callbox::codec
