// Packet-loss concealment for codecs without their own (G.711, G.722), after
// ITU-T G.711 Appendix I: on a loss, find the pitch period of the recent
// audio and repeat it, its wrap-around smoothed by overlap-add; after 10 ms
// repeat the last two periods and after 20 ms the last three (one period
// repeated for long sounds buzzy), cross-fading at each change; fade out
// from 10 ms to silence at 60 ms; cross-fade into the first good audio
// afterwards. Unlike Appendix I it adds no algorithmic delay.
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
    /// sample_rate: a whole number of kHz; the pitch search covers 66-200 Hz.
    explicit PitchConcealer(int sample_rate);

    /// Records good audio as history. After a loss it cross-fades the start
    /// of ``pcm`` from the concealment, so it may change samples in place.
    void observe(std::span<std::int16_t> pcm);

    /// ``samples`` of synthetic audio continuing the history.
    Pcm fill(std::size_t samples);

    /// How much recent audio a loss is concealed from.
    std::size_t history_samples() const { return recent_.size(); }

private:
    void take_history();
    std::size_t find_pitch() const;
    void use_periods(std::size_t count);
    float next_synthetic();

    std::size_t pitch_min_;
    std::size_t pitch_max_;
    std::size_t correlation_length_;
    std::size_t step_;            // 10 ms: full level, then one more period each step
    std::size_t fade_out_;        // samples over which it fades to silence (50 ms)
    std::size_t recovery_;        // cross-fade into good audio (4 ms)
    // The most recent good audio as it arrives: a ring, oldest at recent_start_.
    // Good frames only land here (a copy); the float history the pitch search
    // reads is made from it when a loss starts, which is rare.
    std::vector<std::int16_t> recent_;
    std::size_t recent_start_ = 0;
    std::vector<float> history_;  // recent_ in order, oldest first, as of the loss
    std::size_t pitch_ = 0;
    std::vector<float> buffer_;    // the periods being repeated, wrap-around smoothed
    std::vector<float> previous_;  // the buffer before the last change, faded out
    std::size_t position_ = 0;     // next sample of buffer_ (and of previous_)
    std::size_t crossfade_ = 0;    // samples left of the fade from previous_
    std::size_t concealed_ = 0;    // samples concealed in the current loss
};

}  // namespace callbox::codec
