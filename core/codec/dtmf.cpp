#include "codec/dtmf.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <utility>

#include "codec/telephone_event.h"

namespace callbox::codec {

namespace {

constexpr std::size_t kHalf = 51;           // samples in a half-block, the hop between blocks
constexpr std::size_t kBlock = 2 * kHalf;   // 12.75 ms
constexpr std::array<double, DtmfDetector::kTones> kFrequencies{697, 770, 852, 941, 1209, 1336, 1477, 1633};
constexpr std::string_view kKeypad = "123A456B789C*0#D";  // row by row, columns in order
constexpr double kSampleRate = 8000;
// Half-way between Q.24's 1.5% (detect) and 3.5% (reject); a held digit may drift to 3.5%.
constexpr double kMaxDeviation = 0.025;
constexpr double kMaxHeldDeviation = 0.035;
// Share of the block's energy the two tones must hold.
constexpr float kMinPurity = 0.8F;
constexpr float kMinHeldPurity = 0.6F;
constexpr int kHeldLevelSlackDb = 3;  // a held digit's tones may be this much weaker or more twisted
constexpr int kHitsToDeclare = 3;
constexpr int kMissesToEnd = 2;
// spandsp's level convention, which the rest of the core uses: a full-scale
// sine is +3.14 dBm0 (G.711's digital milliwatt is 0 dBm0).
constexpr double kFullScaleDbm0 = 3.14;

// The window, and the complex exponentials it weights, tabled once.
struct Tables {
    std::array<double, kBlock> window{};
    std::array<double, DtmfDetector::kTones> omega{};  // radians per sample
    // [n][tone]: w(n) e^{-j omega n} for the first half, w(n + 51) e^{-j omega n} for the second.
    std::array<GroupLanes, kHalf> first_cos{}, first_sin{}, second_cos{}, second_sin{};
    std::array<float, kHalf> first_w2{}, second_w2{};
    std::array<std::complex<float>, DtmfDetector::kTones> half_turn{};  // e^{-j omega 51}
    double window_sum = 0;
    double window_energy = 0;  // sum of w^2

    Tables() {
        for (std::size_t n = 0; n < kBlock; ++n) {
            window[n] = 0.5 - 0.5 * std::cos(2 * std::numbers::pi * (static_cast<double>(n) + 0.5) / kBlock);
            window_sum += window[n];
            window_energy += window[n] * window[n];
        }
        for (std::size_t k = 0; k < DtmfDetector::kTones; ++k) {
            omega[k] = 2 * std::numbers::pi * kFrequencies[k] / kSampleRate;
            half_turn[k] = std::polar(1.0F, static_cast<float>(-omega[k] * kHalf));
            for (std::size_t n = 0; n < kHalf; ++n) {
                const double c = std::cos(omega[k] * static_cast<double>(n));
                const double s = -std::sin(omega[k] * static_cast<double>(n));
                first_cos[n][k / 4][k % 4] = static_cast<float>(window[n] * c);
                first_sin[n][k / 4][k % 4] = static_cast<float>(window[n] * s);
                second_cos[n][k / 4][k % 4] = static_cast<float>(window[n + kHalf] * c);
                second_sin[n][k / 4][k % 4] = static_cast<float>(window[n + kHalf] * s);
            }
        }
        for (std::size_t n = 0; n < kHalf; ++n) {
            first_w2[n] = static_cast<float>(window[n] * window[n]);
            second_w2[n] = static_cast<float>(window[n + kHalf] * window[n + kHalf]);
        }
        tabulate_gain();
    }

    // How much of a tone's amplitude a bin sees when the tone is `delta`
    // radians per sample off the bin's frequency (1 on frequency), for
    // |delta| up to kMaxGainDelta, from a table.
    double gain(double delta) const {
        const double at = std::abs(delta) / kMaxGainDelta * (kGainSteps - 1);
        const auto i = std::min(static_cast<std::size_t>(at), kGainSteps - 2);
        const double frac = at - static_cast<double>(i);
        return gains[i] + frac * (gains[i + 1] - gains[i]);
    }

    static constexpr std::size_t kGainSteps = 64;
    // The largest offset a held digit's tone may have: 3.5% of 1633 Hz.
    static constexpr double kMaxGainDelta = 2 * std::numbers::pi * 1633 * kMaxHeldDeviation / kSampleRate;
    std::array<double, kGainSteps> gains{};

private:
    void tabulate_gain() {
        for (std::size_t i = 0; i < kGainSteps; ++i) {
            const double delta = kMaxGainDelta * static_cast<double>(i) / (kGainSteps - 1);
            std::complex<double> sum;
            for (std::size_t n = 0; n < kBlock; ++n) sum += window[n] * std::polar(1.0, delta * static_cast<double>(n));
            gains[i] = std::abs(sum) / window_sum;
        }
    }
};

const Tables& tables() {
    static const Tables t;
    return t;
}

std::size_t strongest(const std::array<std::complex<float>, DtmfDetector::kTones>& bins, std::size_t first) {
    std::size_t best = first;
    for (std::size_t k = first + 1; k < first + 4; ++k) {
        if (std::norm(bins[k]) > std::norm(bins[best])) best = k;
    }
    return best;
}

float amplitude_ratio(int db) { return static_cast<float>(std::pow(10.0, db / 20.0)); }

}  // namespace

DtmfDetector::DtmfDetector(int twist, int reverse_twist, int min_level_dbm0) {
    if (twist < 0 || reverse_twist < 0 || min_level_dbm0 > 0 || min_level_dbm0 < -60) {
        throw CodecError("DTMF detector: twists must be >= 0 dB and the minimum level from "
                         "-60 to 0 dBm0");
    }
    const float min_amplitude =
        32768.0F * amplitude_ratio(min_level_dbm0) / static_cast<float>(std::pow(10.0, kFullScaleDbm0 / 20));
    detect_ = {kMaxDeviation, min_amplitude, amplitude_ratio(twist), amplitude_ratio(reverse_twist), kMinPurity};
    hold_ = {kMaxHeldDeviation, min_amplitude / amplitude_ratio(kHeldLevelSlackDb),
             amplitude_ratio(twist + kHeldLevelSlackDb), amplitude_ratio(reverse_twist + kHeldLevelSlackDb),
             kMinHeldPurity};
    tables();  // built now rather than on a worker's first frame
}

std::string DtmfDetector::process(std::span<const std::int16_t> pcm) {
    while (!pcm.empty()) {
        const std::size_t n = std::min(kHalf - filled_, pcm.size());
        accumulate(pcm.first(n));
        pcm = pcm.subspan(n);
        if (filled_ == kHalf) end_half_block();
    }
    return std::exchange(found_, {});
}

void DtmfDetector::accumulate(std::span<const std::int16_t> pcm) {
    const Tables& t = tables();
    // Eight vector locals (re/im, first/second weighting, rows/columns), so
    // the compiler keeps every sum in a register across the samples.
    ToneLanes first_re_rows = half_.first_re[0], first_re_columns = half_.first_re[1];
    ToneLanes first_im_rows = half_.first_im[0], first_im_columns = half_.first_im[1];
    ToneLanes second_re_rows = half_.second_re[0], second_re_columns = half_.second_re[1];
    ToneLanes second_im_rows = half_.second_im[0], second_im_columns = half_.second_im[1];
    float energy_first = half_.energy_first, energy_second = half_.energy_second;
    for (const std::int16_t sample : pcm) {
        const float x = sample;
        first_re_rows += x * t.first_cos[filled_][0];
        first_re_columns += x * t.first_cos[filled_][1];
        first_im_rows += x * t.first_sin[filled_][0];
        first_im_columns += x * t.first_sin[filled_][1];
        second_re_rows += x * t.second_cos[filled_][0];
        second_re_columns += x * t.second_cos[filled_][1];
        second_im_rows += x * t.second_sin[filled_][0];
        second_im_columns += x * t.second_sin[filled_][1];
        energy_first += x * x * t.first_w2[filled_];
        energy_second += x * x * t.second_w2[filled_];
        ++filled_;
    }
    half_ = {{first_re_rows, first_re_columns},   {first_im_rows, first_im_columns},
             {second_re_rows, second_re_columns}, {second_im_rows, second_im_columns},
             energy_first,                        energy_second};
}

void DtmfDetector::end_half_block() {
    const Tables& t = tables();
    if (previous_half_) {
        // The block is the previous half-block (rising half of the window)
        // then this one (falling half), its phase turned to the block's start.
        Block block;
        for (std::size_t k = 0; k < kTones; ++k) {
            const std::size_t g = k / 4, i = k % 4;
            block.bins[k] = std::complex<float>(previous_half_->first_re[g][i], previous_half_->first_im[g][i]) +
                            t.half_turn[k] * std::complex<float>(half_.second_re[g][i], half_.second_im[g][i]);
        }
        block.power = (previous_half_->energy_first + half_.energy_second) / static_cast<float>(t.window_energy);
        if (previous_block_) {
            const auto m = measure(*previous_block_, block);
            const Limits& limits = m && m->digit == digit_ ? hold_ : detect_;
            count(m && limits.pass(*m) ? std::optional<char>(m->digit) : std::nullopt);
        }
        previous_block_ = block;
    }
    previous_half_ = half_;
    half_ = HalfBlock{};
    filled_ = 0;
}

std::optional<DtmfDetector::Measure> DtmfDetector::measure(const Block& earlier, const Block& later) const {
    const Tables& t = tables();
    const std::size_t row = strongest(later.bins, 0);
    const std::size_t column = strongest(later.bins, 4);
    if (strongest(earlier.bins, 0) != row || strongest(earlier.bins, 4) != column) return std::nullopt;
    Measure m{kKeypad[row * 4 + (column - 4)], 0, 0, 0, 0};
    for (const std::size_t k : {row, column}) {
        // A tone delta radians per sample off the bin turns by delta more per
        // block hop than the bin's own frequency does.
        const std::complex<float> turn = later.bins[k] * std::conj(earlier.bins[k]) * t.half_turn[k];
        const double delta = std::arg(turn) / static_cast<double>(kHalf);
        const double deviation = std::abs(delta) / t.omega[k];
        if (deviation > kMaxHeldDeviation) return std::nullopt;  // beyond any limit (and the gain table)
        m.deviation = std::max(m.deviation, deviation);
        (k < 4 ? m.low : m.high) = static_cast<float>(2 * std::abs(later.bins[k]) / (t.window_sum * t.gain(delta)));
    }
    m.purity = later.power > 0 ? (m.low * m.low + m.high * m.high) / 2 / later.power : 0;
    return m;
}

bool DtmfDetector::Limits::pass(const Measure& m) const {
    const bool twist_ok = m.low >= m.high ? m.low <= m.high * max_twist : m.high <= m.low * max_reverse_twist;
    return m.deviation <= max_deviation && std::min(m.low, m.high) >= min_amplitude && twist_ok &&
           m.purity >= min_purity;
}

void DtmfDetector::count(std::optional<char> hit) {
    if (!hit) {
        hits_ = 0;
        candidate_ = 0;
        misses_ = std::min(misses_ + 1, kMissesToEnd);
        if (misses_ == kMissesToEnd) digit_ = 0;
        return;
    }
    misses_ = 0;
    hits_ = *hit == candidate_ ? std::min(hits_ + 1, kHitsToDeclare) : 1;
    candidate_ = *hit;
    if (hits_ >= kHitsToDeclare && candidate_ != digit_) {
        digit_ = candidate_;
        found_ += digit_;
    }
}

void DtmfDetector::skip(std::size_t samples) {
    if (samples == 0) return;
    // The audio around the gap is not contiguous: start the blocks afresh,
    // keeping the digit held (neither a hit nor a miss is counted).
    half_ = HalfBlock{};
    filled_ = 0;
    previous_half_.reset();
    previous_block_.reset();
}

DtmfGenerator::DtmfGenerator(int level_dbm0, int twist, int on_ms, int off_ms)
    : state_(spandsp_owned<dtmf_tx_state_t, dtmf_tx_free>(dtmf_tx_init(nullptr))) {
    if (level_dbm0 > 0 || level_dbm0 < -60 || on_ms <= 0 || off_ms < 0) {
        throw CodecError("DTMF generator: level must be from -60 to 0 dBm0, tone duration "
                         "positive and pause not negative");
    }
    dtmf_tx_set_level(state_.get(), level_dbm0, twist);
    dtmf_tx_set_timing(state_.get(), on_ms, off_ms);
    digit_samples_ = static_cast<std::size_t>(on_ms + off_ms) * 8;
}

void DtmfGenerator::queue(std::string_view digits) {
    for (const char digit : digits) dtmf_event(digit);  // refuses non-digits by name
    const std::string text(digits);
    if (dtmf_tx_put(state_.get(), text.c_str(), static_cast<int>(text.size())) != 0) {
        throw CodecError("DTMF generator queue is full");
    }
    pending_ += digits.size() * digit_samples_;
}

Pcm DtmfGenerator::generate(std::size_t samples) {
    Pcm pcm(samples);
    std::size_t done = 0;
    while (done < samples) {
        const int n = dtmf_tx(state_.get(), pcm.data() + done, static_cast<int>(samples - done));
        if (n <= 0) break;  // queue empty: the rest stays silent
        done += static_cast<std::size_t>(n);
    }
    pending_ = done < samples ? 0 : pending_ - std::min(pending_, done);
    return pcm;
}

}  // namespace callbox::codec
