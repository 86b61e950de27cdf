#include "jitter/jitter.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace callbox::jitter {

namespace {

constexpr std::int64_t kOneQ30 = std::int64_t{1} << 30;
// Histogram forgetting per packet (0.999 in Q15): about 1000 packets (20 s at
// 50 pps) of memory. A queue burst enters it as one packet (see update_delay),
// so the memory can be long enough for a steady estimate of the tail.
constexpr std::int64_t kForgetQ15 = 32735;
// The target covers 98 % of packets: each one beyond it costs a concealed frame.
constexpr std::int64_t kPercentileQ30 = kOneQ30 / 100 * 98;
// The transit minimum is taken over this window, so sender clock drift moves
// the reference along instead of reading as ever-growing delay.
constexpr std::int64_t kTransitWindowMs = 2000;
// A late frame this far above the histogram's target, and at least
// kPeakTargetMultiple times it, is a peak; two peaks inside the window mean
// the network spikes periodically and the target covers them. Late frames
// less than kPeakEventMs apart are one peak. The multiple keeps the tail of a
// wide delay spread from passing for spikes: with 40 ms of exponential jitter
// the target is 160-180 ms, 1 frame in 850 lands 100 ms beyond it by chance
// (two in 10 s: one window in eight), and 1 in 5000 beyond twice it.
constexpr std::int64_t kPeakThresholdMs = 100;
constexpr std::int64_t kPeakTargetMultiple = 2;
constexpr std::int64_t kPeakWindowMs = 10000;
constexpr std::int64_t kPeakEventMs = 1000;
// Buffer-level smoothing per tick (252/256): about 1.3 s, so one late packet
// does not trigger time-stretching.
constexpr std::int64_t kLevelFilterQ8 = 252;
// Above the high limit by this many frames, accelerate even in speech: drift
// must not grow the buffer without bound when the caller never says quiet.
constexpr std::int64_t kForceAccelerateFrames = 4;
constexpr int kSequenceWindow = 64;
constexpr std::int64_t kMaxSequenceJump = 3000;
constexpr std::int64_t kMinJumpMs = 2000;
// Payload buffers kept for reuse: a steady stream needs two or three.
constexpr std::size_t kSpareBuffers = 8;

}  // namespace

JitterBuffer::JitterBuffer(const Settings& settings) : settings_(settings) {
    if (settings.clock_rate == 0) throw std::invalid_argument("clock_rate must be positive");
    if (settings.min_delay_ms < 0 || settings.max_delay_ms < settings.min_delay_ms) {
        throw std::invalid_argument("delay limits must satisfy 0 <= min_delay_ms <= max_delay_ms: got " +
                                    std::to_string(settings.min_delay_ms) + " and " +
                                    std::to_string(settings.max_delay_ms));
    }
    if (settings.max_frames == 0) throw std::invalid_argument("max_frames must be positive");
    target_ms_ = std::clamp(kBucketMs, settings.min_delay_ms, settings.max_delay_ms);
}

std::int64_t JitterBuffer::to_ms(std::int64_t samples) const { return samples * 1000 / settings_.clock_rate; }

std::int64_t JitterBuffer::to_samples(std::int64_t ms) const { return ms * settings_.clock_rate / 1000; }

std::int64_t JitterBuffer::level() const {
    std::int64_t total = 0;
    for (const Slot& slot : slots_) total += slot.samples;
    return total;
}

PutResult JitterBuffer::put(std::span<const std::uint8_t> payload, std::uint32_t timestamp,
                            std::uint16_t sequence, std::uint32_t samples, std::int64_t arrival_ms,
                            std::uint32_t source) {
    if (samples == 0) throw std::invalid_argument("a frame must last at least one sample");
    ++stats_.received;
    PutResult result = PutResult::buffered;
    if (!have_source_) {
        last_timestamp_ = timestamp;
    } else if (source != source_) {
        reset_timeline(true);
        result = PutResult::flushed;
    }
    have_source_ = true;
    source_ = source;

    const std::int64_t ts =
        last_timestamp_ + static_cast<std::int32_t>(timestamp - static_cast<std::uint32_t>(last_timestamp_));
    last_timestamp_ = ts;
    const bool have_reference = started_ || !slots_.empty();
    const std::int64_t reference = started_ ? next_timestamp_ : (slots_.empty() ? 0 : slots_.front().timestamp);
    const std::int64_t jump = to_samples(std::max(kMinJumpMs, 2 * settings_.max_delay_ms));
    if (have_reference && (ts - reference > jump || reference - ts > jump)) {
        reset_timeline(true);
        result = PutResult::flushed;
    }

    const auto same_timestamp = [ts](const Slot& slot) { return slot.timestamp == ts; };
    if (sequence_seen(sequence) || std::any_of(slots_.begin(), slots_.end(), same_timestamp)) {
        ++stats_.duplicates;
        return PutResult::duplicate;
    }
    const std::int64_t relative_ms = update_delay(ts, arrival_ms);
    if (started_ && ts < next_timestamp_) {
        ++stats_.late;
        note_peak(arrival_ms, relative_ms);
        return PutResult::late;
    }
    if (slots_.size() >= settings_.max_frames) {
        reset_timeline(false);
        result = PutResult::flushed;
    }
    const auto later = std::upper_bound(slots_.begin(), slots_.end(), ts,
                                        [](std::int64_t t, const Slot& slot) { return t < slot.timestamp; });
    slots_.insert(later, Slot{ts, sequence, samples, arrival_ms, take_buffer(payload)});
    return result;
}

std::vector<std::uint8_t> JitterBuffer::take_buffer(std::span<const std::uint8_t> payload) {
    std::vector<std::uint8_t> buffer;
    if (!spare_buffers_.empty()) {
        buffer = std::move(spare_buffers_.back());
        spare_buffers_.pop_back();
    }
    buffer.assign(payload.begin(), payload.end());
    return buffer;
}

void JitterBuffer::give_back(std::vector<std::uint8_t>&& buffer) {
    if (spare_buffers_.size() < kSpareBuffers) spare_buffers_.push_back(std::move(buffer));
}

void JitterBuffer::pop_front() {
    give_back(std::move(slots_.front().payload));
    slots_.erase(slots_.begin());
}

void JitterBuffer::reset_timeline(bool new_sequence) {
    stats_.discarded += static_cast<std::int64_t>(slots_.size());
    ++stats_.flushes;
    for (Slot& slot : slots_) give_back(std::move(slot.payload));
    slots_.clear();
    started_ = false;
    after_expand_ = false;
    stalled_ = false;
    stall_debt_ = 0;
    // The transit reference belongs to the old timestamp base.
    transits_.clear();
    if (new_sequence) rebase_sequence();
}

void JitterBuffer::rebase_sequence() {
    if (have_sequence_) lost_prior_ += highest_sequence_ - base_sequence_ + 1 - unique_;
    have_sequence_ = false;
    unique_ = 0;
}

bool JitterBuffer::sequence_seen(std::uint16_t sequence) {
    std::int64_t delta = 0;
    if (have_sequence_) {
        delta = static_cast<std::int16_t>(sequence - static_cast<std::uint16_t>(highest_sequence_));
        // A sender that restarts its numbering is a new sequence, not 30000 losses.
        if (delta > kMaxSequenceJump || delta < -kMaxSequenceJump) rebase_sequence();
    }
    if (!have_sequence_) {
        have_sequence_ = true;
        base_sequence_ = highest_sequence_ = sequence;
        seen_ = 1;
        unique_ = 1;
        return false;
    }
    if (delta > 0) {
        seen_ = delta >= kSequenceWindow ? 1 : (seen_ << delta) | 1;
        highest_sequence_ += delta;
    } else if (-delta < kSequenceWindow) {
        const std::uint64_t bit = std::uint64_t{1} << -delta;
        if ((seen_ & bit) != 0) return true;
        seen_ |= bit;
    }
    ++unique_;
    return false;
}

std::int64_t JitterBuffer::update_delay(std::int64_t timestamp, std::int64_t arrival_ms) {
    // A frame can be played no earlier than the first tick after it arrives, so
    // its delay is measured to that tick: arrivals spread across one tick period
    // need no more buffer than arrivals at its start.
    std::int64_t playable_ms = arrival_ms;
    if (tick_ms_ > 0) {
        const std::int64_t ticks = (arrival_ms - last_tick_ms_ + tick_ms_ - 1) / tick_ms_;
        playable_ms = last_tick_ms_ + std::max<std::int64_t>(1, ticks) * tick_ms_;
    }
    const std::int64_t transit = to_samples(playable_ms) - timestamp;
    while (!transits_.empty() && transits_.back().transit >= transit) transits_.pop_back();
    transits_.push_back({arrival_ms, transit});
    while (transits_.front().arrival_ms + kTransitWindowMs <= arrival_ms) transits_.pop_front();
    const std::int64_t relative_ms = to_ms(transit - transits_.front().transit);
    // Frames that arrive together after an underrun are one delay event, which
    // holding the timeline absorbed: only the first of them enters the histogram,
    // so a recurring queue burst does not pin the target at its height.
    if (stalled_ && !slots_.empty()) return relative_ms;

    // Until the histogram holds enough packets, it is their plain average.
    ++histogram_count_;
    const std::int64_t forget = std::min(kForgetQ15, 32768 - 32768 / histogram_count_);
    std::int64_t sum = 0;
    for (std::int32_t& p : histogram_) {
        p = static_cast<std::int32_t>((p * forget) >> 15);
        sum += p;
    }
    histogram_[static_cast<std::size_t>(std::min<std::int64_t>(relative_ms / kBucketMs, kBuckets - 1))] +=
        static_cast<std::int32_t>(kOneQ30 - sum);
    update_target(arrival_ms);
    return relative_ms;
}

void JitterBuffer::note_peak(std::int64_t arrival_ms, std::int64_t relative_ms) {
    // Only frames that were lost for lateness count: a delay the held timeline
    // absorbed cost no audio, so it is no reason to raise the target.
    const std::int64_t percentile_ms = histogram_target_ms();
    if (relative_ms <= std::max(percentile_ms + kPeakThresholdMs, kPeakTargetMultiple * percentile_ms)) return;
    if (peak_count_ > 0 && arrival_ms < last_late_ms_ + kPeakEventMs) {
        Peak& peak = peaks_[(peak_count_ - 1) % peaks_.size()];
        peak.delay_ms = std::max(peak.delay_ms, relative_ms);
    } else {
        peaks_[peak_count_ % peaks_.size()] = {arrival_ms, relative_ms};
        ++peak_count_;
    }
    last_late_ms_ = arrival_ms;
    update_target(arrival_ms);
}

void JitterBuffer::update_target(std::int64_t arrival_ms) {
    int recent = 0;
    std::int64_t highest_peak = 0;
    for (std::size_t i = 0; i < std::min(peak_count_, peaks_.size()); ++i) {
        if (peaks_[i].arrival_ms + kPeakWindowMs > arrival_ms) {
            ++recent;
            highest_peak = std::max(highest_peak, peaks_[i].delay_ms);
        }
    }
    const std::int64_t peak_ms = recent >= 2 ? (highest_peak / kBucketMs + 1) * kBucketMs : 0;
    target_ms_ = std::clamp(std::max(histogram_target_ms(), peak_ms), settings_.min_delay_ms,
                            settings_.max_delay_ms);
}

std::int64_t JitterBuffer::histogram_target_ms() const {
    std::int64_t cumulative = 0;
    for (int b = 0; b < kBuckets; ++b) {
        cumulative += histogram_[static_cast<std::size_t>(b)];
        if (cumulative >= kPercentileQ30) return (b + 1) * kBucketMs;
    }
    return kBuckets * kBucketMs;
}

void JitterBuffer::get(std::int64_t now_ms, bool low_energy, Output& out) {
    out.has_frame = false;
    if (have_tick_ && now_ms > last_tick_ms_) tick_ms_ = now_ms - last_tick_ms_;
    have_tick_ = true;
    last_tick_ms_ = now_ms;
    if (!started_) {
        const bool waited = !slots_.empty() && now_ms - slots_.front().arrival_ms >= target_ms_;
        if (slots_.empty() || (to_ms(level()) < target_ms_ && !waited)) {
            ++stats_.buffering;
            out.decision = Decision::buffering;
            return;
        }
        started_ = true;
        next_timestamp_ = slots_.front().timestamp;
        frame_samples_ = slots_.front().samples;
        filtered_level_q8_ = level() << 8;
    }
    const std::int64_t current = level();
    stats_.max_buffer_delay_ms = std::max(stats_.max_buffer_delay_ms, to_ms(current));
    filtered_level_q8_ = (filtered_level_q8_ * kLevelFilterQ8 + (current << 8) * (256 - kLevelFilterQ8)) >> 8;

    if (!slots_.empty() && slots_.front().timestamp == next_timestamp_) {
        const Decision decision = decide(low_energy);
        const std::int64_t samples = slots_.front().samples;
        if (decision == Decision::preemptive_expand) {
            ++stats_.preemptive_expanded;
            filtered_level_q8_ += samples << 8;
            out.decision = decision;
            return;
        }
        if (decision == Decision::accelerate) {
            ++stats_.discarded;
            pop_front();
        }
        play(decision, now_ms, out);
    } else if (!slots_.empty() && stalled_) {
        // Time ran on while the timeline stood still (an underrun, a DTX pause):
        // the gap up to the next frame is explained, not lost. The ticks it
        // skips were not added to the delay.
        const std::int64_t skipped = (slots_.front().timestamp - next_timestamp_) / frame_samples_;
        stall_debt_ = std::max<std::int64_t>(0, stall_debt_ - skipped);
        next_timestamp_ = slots_.front().timestamp;
        play(Decision::merge, now_ms, out);
    } else {
        ++stats_.expanded;
        after_expand_ = true;
        out.decision = Decision::expand;
        if (slots_.empty()) {
            // Underrun: hold the timeline, so a delayed stream is played late rather than lost.
            stalled_ = true;
            ++stall_debt_;
        } else {
            // A gap: give the missing slot up and move toward the next frame.
            next_timestamp_ = std::min(next_timestamp_ + frame_samples_, slots_.front().timestamp);
        }
    }
}

Decision JitterBuffer::decide(bool low_energy) {
    const std::int64_t samples = slots_.front().samples;
    const std::int64_t target = to_samples(target_ms_);
    const bool next_held = slots_.size() >= 2 && slots_[1].timestamp == next_timestamp_ + samples;
    // A stall's delay goes as soon as a frame beyond the target is held, not
    // through the slow filter: the next frame is there, so the buffer stays on
    // target. Right after the stall's concealment the frame dropped is the one
    // the stall waited for: the concealment stood in for it, so the stream
    // joins again with one seam (concealment, next frame) instead of two
    // (concealment, the waited-for frame, then a dropped one a tick later),
    // and the frames after it are played a tick earlier.
    if (next_held && low_energy && stall_debt_ > 0 && level() >= target + samples) {
        --stall_debt_;
        return Decision::accelerate;
    }
    if (after_expand_) return Decision::merge;
    // The level counts the frame about to play, so a level at target is on
    // target; half a frame above it leaves room for the filter to settle.
    // Accelerate and preemptive expand move the level by a whole frame, so the
    // band between the limits is at least a frame and a half wide: a step from
    // one limit lands half a frame inside the other, not on it (a band one
    // frame wide made a sender's clock drift bounce between the two, one
    // dropped and one stretched frame after the other).
    const std::int64_t low = std::min(target * 3 / 4, target - 3 * samples / 4);
    const std::int64_t high = std::max(target + samples / 2, low + 3 * samples / 2);
    const bool forced = filtered_level_q8_ >= (high + kForceAccelerateFrames * samples) << 8;
    if (next_held && filtered_level_q8_ >= high << 8 && (low_energy || forced)) {
        filtered_level_q8_ -= samples << 8;
        return Decision::accelerate;
    }
    if (low_energy && filtered_level_q8_ < low << 8) return Decision::preemptive_expand;
    return Decision::normal;
}

void JitterBuffer::play(Decision decision, std::int64_t now_ms, Output& out) {
    Slot& slot = slots_.front();
    out.decision = decision;
    out.has_frame = true;
    out.payload.swap(slot.payload);
    out.timestamp = static_cast<std::uint32_t>(slot.timestamp);
    out.sequence = slot.sequence;
    out.samples = slot.samples;
    stats_.waiting_ms_total += std::max<std::int64_t>(0, now_ms - slot.arrival_ms);
    next_timestamp_ = slot.timestamp + slot.samples;
    frame_samples_ = slot.samples;
    after_expand_ = false;
    stalled_ = false;
    if (decision == Decision::normal) ++stats_.normal;
    if (decision == Decision::merge) ++stats_.merged;
    if (decision == Decision::accelerate) ++stats_.accelerated;
    pop_front();  // gives back the caller's previous payload, swapped in above
}

std::span<const std::uint8_t> JitterBuffer::next_held() const {
    if (!started_ || slots_.empty() || slots_.front().timestamp != next_timestamp_) return {};
    return slots_.front().payload;
}

Stats JitterBuffer::stats() const {
    Stats s = stats_;
    s.lost = lost_prior_ + (have_sequence_ ? highest_sequence_ - base_sequence_ + 1 - unique_ : 0);
    s.target_delay_ms = target_ms_;
    s.buffer_delay_ms = buffer_delay_ms();
    s.buffered_frames = static_cast<std::int64_t>(slots_.size());
    return s;
}

}  // namespace callbox::jitter
