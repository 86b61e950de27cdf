#include "codec/plc.h"

#include <algorithm>
#include <cmath>

namespace callbox::codec {

namespace {

constexpr std::size_t kMaxPeriods = 3;

std::int16_t saturate(float value) {
    return static_cast<std::int16_t>(std::clamp(std::lround(value), -32768L, 32767L));
}

}  // namespace

PitchConcealer::PitchConcealer(int sample_rate) {
    const auto per_ms = static_cast<std::size_t>(sample_rate / 1000);
    pitch_min_ = 5 * per_ms;    // 200 Hz
    pitch_max_ = 15 * per_ms;   // 66.7 Hz
    correlation_length_ = 20 * per_ms;
    step_ = 10 * per_ms;
    fade_out_ = 50 * per_ms;
    recovery_ = 4 * per_ms;
    // Three of the longest periods, and a quarter period before them for the
    // wrap-around blend.
    recent_.assign(kMaxPeriods * pitch_max_ + pitch_max_ / 4, 0);
    history_.assign(recent_.size(), 0.0F);
}

void PitchConcealer::observe(std::span<std::int16_t> pcm) {
    if (concealed_ > 0) {
        const std::size_t n = std::min(recovery_, pcm.size());
        for (std::size_t i = 0; i < n; ++i) {
            const float weight = static_cast<float>(i + 1) / static_cast<float>(n + 1);
            pcm[i] = saturate(weight * pcm[i] + (1.0F - weight) * next_synthetic());
        }
        concealed_ = 0;
    }
    const std::size_t keep = recent_.size();
    std::span<const std::int16_t> kept = pcm.last(std::min(keep, pcm.size()));
    // The oldest samples are overwritten in place: in at most two pieces around the ring's end.
    while (!kept.empty()) {
        const std::size_t piece = std::min(kept.size(), keep - recent_start_);
        std::copy_n(kept.begin(), piece, recent_.begin() + static_cast<std::ptrdiff_t>(recent_start_));
        recent_start_ = (recent_start_ + piece) % keep;
        kept = kept.subspan(piece);
    }
}

void PitchConcealer::take_history() {
    const auto start = recent_.begin() + static_cast<std::ptrdiff_t>(recent_start_);
    const auto rest = std::copy(start, recent_.end(), history_.begin());
    std::copy(recent_.begin(), start, rest);
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

// Repeats the last ``count`` pitch periods of the history. Their final
// quarter period is blended towards the audio just before them, so that the
// end joins the start smoothly on repeat. The read position stays put: the
// new buffer starts whole periods earlier, so the waveform keeps its phase.
void PitchConcealer::use_periods(std::size_t count) {
    const std::size_t length = count * pitch_;
    const std::size_t overlap = pitch_ / 4;
    const std::size_t start = history_.size() - length;
    previous_ = std::move(buffer_);
    buffer_.assign(history_.begin() + static_cast<std::ptrdiff_t>(start), history_.end());
    for (std::size_t i = 0; i < overlap; ++i) {
        const float weight = static_cast<float>(i + 1) / static_cast<float>(overlap + 1);
        const std::size_t at = length - overlap + i;
        buffer_[at] = (1.0F - weight) * buffer_[at] + weight * history_[start - overlap + i];
    }
    crossfade_ = previous_.empty() ? 0 : overlap;
}

float PitchConcealer::next_synthetic() {
    const std::size_t t = concealed_++;
    if (t > 0 && t % step_ == 0 && t / step_ < kMaxPeriods) use_periods(t / step_ + 1);
    float sample = buffer_[position_ % buffer_.size()];
    if (crossfade_ > 0) {
        const float weight = static_cast<float>(crossfade_) / static_cast<float>(pitch_ / 4 + 1);
        sample = weight * previous_[position_ % previous_.size()] + (1.0F - weight) * sample;
        --crossfade_;
    }
    position_ = (position_ + 1) % buffer_.size();
    const float gain = t < step_ ? 1.0F
                                 : std::max(0.0F, 1.0F - static_cast<float>(t - step_) /
                                                            static_cast<float>(fade_out_));
    return sample * gain;
}

Pcm PitchConcealer::fill(std::size_t samples) {
    if (concealed_ == 0) {
        take_history();
        pitch_ = find_pitch();
        buffer_.clear();
        position_ = 0;
        use_periods(1);
    }
    Pcm pcm(samples);
    for (auto& sample : pcm) sample = saturate(next_synthetic());
    return pcm;
}

}  // namespace callbox::codec
