#include "codec/plc.h"

#include <algorithm>
#include <cmath>

namespace callbox::codec {

PitchConcealer::PitchConcealer(int sample_rate) {
    const auto per_ms = static_cast<std::size_t>(sample_rate / 1000);
    pitch_min_ = 5 * per_ms;    // 200 Hz
    pitch_max_ = 15 * per_ms;   // 66.7 Hz
    correlation_length_ = 20 * per_ms;
    fade_in_ = 10 * per_ms;
    fade_out_ = 50 * per_ms;
    recovery_ = 4 * per_ms;
    history_.assign(correlation_length_ + pitch_max_, 0.0F);
}

void PitchConcealer::observe(std::span<std::int16_t> pcm) {
    if (concealed_ > 0) {
        const std::size_t n = std::min(recovery_, pcm.size());
        for (std::size_t i = 0; i < n; ++i) {
            const float weight = static_cast<float>(i + 1) / static_cast<float>(n + 1);
            const float mixed = weight * pcm[i] + (1.0F - weight) * next_synthetic();
            pcm[i] = static_cast<std::int16_t>(std::clamp(std::lround(mixed), -32768L, 32767L));
        }
        concealed_ = 0;
    }
    const std::size_t keep = history_.size();
    if (pcm.size() >= keep) {
        std::copy(pcm.end() - static_cast<std::ptrdiff_t>(keep), pcm.end(), history_.begin());
    } else {
        std::shift_left(history_.begin(), history_.end(), static_cast<std::ptrdiff_t>(pcm.size()));
        std::copy(pcm.begin(), pcm.end(), history_.end() - static_cast<std::ptrdiff_t>(pcm.size()));
    }
}

// The lag whose earlier audio best matches the latest correlation_length_
// samples (normalised cross-correlation).
std::size_t PitchConcealer::find_pitch() const {
    const std::size_t end = history_.size();
    const float* recent = &history_[end - correlation_length_];
    std::size_t best = pitch_min_;
    double best_score = -1.0;
    for (std::size_t lag = pitch_min_; lag <= pitch_max_; ++lag) {
        const float* earlier = recent - lag;
        double correlation = 0.0;
        double energy = 1e-9;
        for (std::size_t k = 0; k < correlation_length_; ++k) {
            correlation += static_cast<double>(recent[k]) * earlier[k];
            energy += static_cast<double>(earlier[k]) * earlier[k];
        }
        const double score = correlation / std::sqrt(energy);
        if (score > best_score) {
            best_score = score;
            best = lag;
        }
    }
    return best;
}

float PitchConcealer::next_synthetic() {
    const std::size_t t = concealed_++;
    const float gain =
        t < fade_in_ ? 1.0F
                     : std::max(0.0F, 1.0F - static_cast<float>(t - fade_in_) /
                                                static_cast<float>(fade_out_));
    const float sample = period_[position_] * gain;
    position_ = (position_ + 1) % period_.size();
    return sample;
}

Pcm PitchConcealer::fill(std::size_t samples) {
    if (concealed_ == 0) {
        // The last pitch period, whose final quarter is blended towards the
        // period before it, so that it joins its own start smoothly on repeat.
        const std::size_t pitch = find_pitch();
        const std::size_t overlap = pitch / 4;
        const std::size_t start = history_.size() - pitch;
        period_.assign(history_.begin() + static_cast<std::ptrdiff_t>(start), history_.end());
        for (std::size_t i = 0; i < overlap; ++i) {
            const float weight = static_cast<float>(i + 1) / static_cast<float>(overlap + 1);
            const std::size_t at = pitch - overlap + i;
            period_[at] = (1.0F - weight) * period_[at] + weight * history_[start - pitch + at];
        }
        position_ = 0;
    }
    Pcm pcm(samples);
    for (auto& sample : pcm) {
        sample = static_cast<std::int16_t>(std::clamp(std::lround(next_synthetic()), -32768L, 32767L));
    }
    return pcm;
}

}  // namespace callbox::codec
