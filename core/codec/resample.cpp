#include "codec/resample.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>
#include <numeric>

namespace callbox::codec {

namespace {

constexpr double kStopbandDb = 80.0;
constexpr double kPassbandEdge = 0.875;  // of the lower Nyquist frequency
constexpr double kStopbandEdge = 1.025;  // aliases fold above the passband
// Taps per step of the kernel: four Float4 vectors, four multiply-add chains
// in flight. One chain waits on each add's latency, and the 48-to-8 kHz
// filter has 401 taps an output.
constexpr std::size_t kLanes = 4;
constexpr std::size_t kWidth = 4 * kLanes;

Float4 load(const float* from) {
    Float4 v;
    std::memcpy(&v, from, sizeof v);  // an unaligned load
    return v;
}

void check_rate(int rate) {
    if (rate != 8000 && rate != 16000 && rate != 48000) {
        throw CodecError("unsupported sample rate " + std::to_string(rate) +
                         " Hz: expected 8000, 16000 or 48000");
    }
}

// Zeroth-order modified Bessel function of the first kind, by its series.
double bessel_i0(double x) {
    double sum = 1.0;
    double term = 1.0;
    for (int k = 1; term > 1e-12 * sum; ++k) {
        term *= (x / (2.0 * k)) * (x / (2.0 * k));
        sum += term;
    }
    return sum;
}

}  // namespace

Resampler::Resampler(int in_rate, int out_rate) : in_rate_(in_rate), out_rate_(out_rate) {
    check_rate(in_rate);
    check_rate(out_rate);
    const int g = std::gcd(in_rate, out_rate);
    up_ = out_rate / g;
    down_ = in_rate / g;
    // Rows of taps_per_phase_ taps padded to the kernel's width, zeroed, and the inputs they reach back to.
    const auto size_rows = [this] {
        stride_ = (taps_per_phase_ + kWidth - 1) / kWidth * kWidth;
        phases_.assign(stride_ * static_cast<std::size_t>(up_), 0.0F);
        buffer_.assign(stride_ - 1, 0.0F);
    };
    if (up_ == 1 && down_ == 1) {
        taps_per_phase_ = 1;
        size_rows();
        phases_.back() = 1.0F;  // the newest input, as it is
        return;
    }
    // Design at the upsampled rate (Kaiser's formulas, Oppenheim & Schafer 7.6).
    const double rate = static_cast<double>(in_rate) * up_;
    const double nyquist = std::min(in_rate, out_rate) / 2.0;
    const double pass = kPassbandEdge * nyquist;
    const double stop = kStopbandEdge * nyquist;
    const double width = 2.0 * std::numbers::pi * (stop - pass) / rate;
    const auto length = static_cast<std::size_t>(std::ceil((kStopbandDb - 8.0) / (2.285 * width)));
    taps_per_phase_ = (length + static_cast<std::size_t>(up_) - 1) / static_cast<std::size_t>(up_);
    const std::size_t total = taps_per_phase_ * static_cast<std::size_t>(up_);
    const double beta = 0.1102 * (kStopbandDb - 8.7);
    const double cutoff = (pass + stop) / 2.0 / rate;  // cycles per sample
    const double centre = (static_cast<double>(total) - 1.0) / 2.0;
    size_rows();
    for (std::size_t k = 0; k < total; ++k) {
        const double n = static_cast<double>(k) - centre;
        const double sinc = n == 0.0 ? 2.0 * cutoff
                                     : std::sin(2.0 * std::numbers::pi * cutoff * n) /
                                           (std::numbers::pi * n);
        const double r = n / centre;
        const double window = bessel_i0(beta * std::sqrt(std::max(0.0, 1.0 - r * r))) /
                              bessel_i0(beta);
        // Tap k belongs to phase k % L at position k / L, stored in reverse
        // so that the kernel walks taps and input in the same direction (the
        // zero taps that pad a row to the stride meet the oldest inputs); the
        // gain of L makes up for the zeros that upsampling inserts.
        const std::size_t phase = k % static_cast<std::size_t>(up_);
        const std::size_t position = stride_ - 1 - k / static_cast<std::size_t>(up_);
        phases_[phase * stride_ + position] = static_cast<float>(up_ * sinc * window);
    }
}

int Resampler::delay() const {
    const double upsampled = (static_cast<double>(taps_per_phase_) * up_ - 1.0) / 2.0;
    return static_cast<int>(std::lround(upsampled / down_));
}

Pcm Resampler::process(std::span<const std::int16_t> in) {
    const std::size_t history = stride_ - 1;
    buffer_.insert(buffer_.end(), in.begin(), in.end());
    const long long up = up_;
    const long long end = static_cast<long long>(in.size()) * up;
    Pcm out;
    out.reserve(static_cast<std::size_t>((end - time_ + down_ - 1) / down_ + 1));
    // time_ = base * L + phase, stepped by M without a division per output.
    auto base = static_cast<std::size_t>(time_ / up);
    auto phase = static_cast<std::size_t>(time_ % up);
    const auto step_base = static_cast<std::size_t>(down_ / up_);
    const auto step_phase = static_cast<std::size_t>(down_ % up_);
    for (; time_ < end; time_ += down_) {
        const float* taps = &phases_[phase * stride_];
        // Inputs x[base - S + 1] .. x[base] sit at buffer_[base] .. buffer_[base + S - 1].
        const float* input = &buffer_[base];
        Float4 a0{};
        Float4 a1{};
        Float4 a2{};
        Float4 a3{};
        for (std::size_t j = 0; j < stride_; j += kWidth) {
            a0 += load(taps + j) * load(input + j);
            a1 += load(taps + j + kLanes) * load(input + j + kLanes);
            a2 += load(taps + j + 2 * kLanes) * load(input + j + 2 * kLanes);
            a3 += load(taps + j + 3 * kLanes) * load(input + j + 3 * kLanes);
        }
        const Float4 all = (a0 + a1) + (a2 + a3);
        const float sum = std::clamp((all[0] + all[1]) + (all[2] + all[3]), -32768.0F, 32767.0F);
        // Rounded half away from zero, as lround, without its library call per sample.
        out.push_back(static_cast<std::int16_t>(static_cast<int>(sum + (sum < 0.0F ? -0.5F : 0.5F))));
        base += step_base;
        phase += step_phase;
        if (phase >= static_cast<std::size_t>(up_)) {
            phase -= static_cast<std::size_t>(up_);
            ++base;
        }
    }
    time_ -= end;
    buffer_.erase(buffer_.begin(), buffer_.end() - static_cast<std::ptrdiff_t>(history));
    return out;
}

}  // namespace callbox::codec
