#include "engine/record_in.h"

#include <algorithm>
#include <vector>

namespace callbox::engine {

namespace {

// Ticks a new stream waits before its first frame plays (recorded as
// silence). Four: a worker that wakes a few ticks late (a busy machine) and
// makes up the frames it missed finds them there, rather than concealing
// for all its legs at once when it can least afford it.
constexpr int kStartTicks = 4;
// A level (samples buffered at a tick) never below this for two seconds is
// more delay than the stream needs: one frame is dropped.
constexpr std::uint32_t kSpareLevel = 7 * 160;
constexpr int kWindowTicks = 100;
// A sender silent this long has paused (DTX, hold): the recording stays
// silent and the next packet starts the stream afresh.
constexpr int kPauseTicks = 25;

}  // namespace

template <class F>
void RecordedG711In::for_each_word(std::uint32_t from, std::uint32_t count, F f) {
    while (count > 0) {
        const std::uint32_t at = from % kRing;
        const std::uint32_t bit = at % 64;
        const std::uint32_t n = std::min(count, 64 - bit);
        const std::uint64_t mask = (n == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << n) - 1) << bit;
        f(at / 64, mask);
        from += n;
        count -= n;
    }
}

bool RecordedG711In::all_present(std::uint32_t from, std::uint32_t count) const {
    bool all = true;
    for_each_word(from, count, [&](std::uint32_t word, std::uint64_t mask) { all &= (present_[word] & mask) == mask; });
    return all;
}

void RecordedG711In::forget(std::uint32_t from, std::uint32_t count) {
    for_each_word(from, count, [&](std::uint32_t word, std::uint64_t mask) { present_[word] &= ~mask; });
}

template <class F>
void RecordedG711In::for_each_piece(std::uint32_t from, std::uint32_t count, F f) {
    for (std::uint32_t done = 0; done < count;) {
        const std::uint32_t at = (from + done) % kRing;
        const std::uint32_t n = std::min(count - done, kRing - at);
        f(at, n, done);
        done += n;
    }
}

void RecordedG711In::decode(std::uint32_t from, std::uint32_t count, std::int16_t* out) const {
    for_each_piece(from, count, [&](std::uint32_t at, std::uint32_t n, std::uint32_t done) {
        decode_codes_(codes_.data() + at, n, out + done);
    });
}

void RecordedG711In::restart(std::uint32_t timestamp, std::uint32_t source) {
    if (started_) ++stats_.flushes;
    present_.fill(0);
    started_ = true;
    source_ = source;
    play_ = timestamp;
    newest_end_ = timestamp;
    start_ticks_ = kStartTicks;
    concealed_frames_ = 0;
    grow_ = false;
    stalled_ = 0;
    window_min_level_ = kRing;
    window_ticks_ = 0;
}

void RecordedG711In::put(std::span<const std::uint8_t> payload, std::uint32_t timestamp, std::uint16_t,
                         std::uint32_t source, std::int64_t arrival_ms) {
    if (payload.empty()) return;
    auto samples = static_cast<std::uint32_t>(std::min<std::size_t>(payload.size(), kRing / 2));
    // A new sender, or a timestamp out of all proportion with this stream's (a
    // jump, or a straggler from long ago), starts the stream afresh.
    const std::int32_t ahead = ahead_of_play(timestamp);
    if (!started_ || source != source_ || ahead > static_cast<std::int32_t>(kRing) ||
        ahead < -static_cast<std::int32_t>(kRing)) {
        restart(timestamp, source);
    } else if (ahead + static_cast<std::int32_t>(samples) <= 0) {
        // Its time has been played: a frame the recording concealed came too
        // late (from now on it waits a frame longer), or a duplicate.
        const auto back = (static_cast<std::uint32_t>(-ahead) + kFrame - 1) / kFrame;
        if (back <= 32 && (concealed_frames_ >> (back - 1) & 1U) != 0) {
            ++stats_.late;
            grow_ = true;
        } else {
            ++stats_.duplicates;
        }
        return;
    } else if (ahead < 0) {
        // Its start has been played: the rest is in time.
        const auto played = static_cast<std::uint32_t>(-ahead);
        payload = payload.subspan(played);
        timestamp += played;
        samples -= played;
    } else if (stalled_ > 0 && ahead >= static_cast<std::int32_t>(kFrame)) {
        // After a wait, audio from later than the wait's start: the sender
        // skipped that time (a pause, or packets lost): play on from where it
        // would have been, not from before the wait.
        const auto skip = std::min<std::uint32_t>(static_cast<std::uint32_t>(stalled_) * kFrame,
                                                  static_cast<std::uint32_t>(ahead));
        forget(play_, skip);
        play_ += skip;
        const std::uint32_t frames = std::min<std::uint32_t>((skip + kFrame - 1) / kFrame, 31);
        concealed_frames_ = concealed_frames_ << frames | ((1U << frames) - 1);
    }
    stalled_ = 0;
    const std::int32_t end_ahead = ahead_of_play(timestamp) + static_cast<std::int32_t>(samples);
    if (end_ahead > static_cast<std::int32_t>(kRing)) {
        // More than the ring ahead of playout: the oldest audio makes room.
        const auto overflow = static_cast<std::uint32_t>(end_ahead) - kRing;
        stats_.discarded += (overflow + kFrame - 1) / kFrame;
        forget(play_, overflow);
        play_ += overflow;
    }
    if (present(timestamp) && present(timestamp + samples - 1)) {
        ++stats_.duplicates;
        return;
    }
    ++stats_.received;
    for_each_piece(timestamp, samples, [&](std::uint32_t at, std::uint32_t n, std::uint32_t done) {
        std::copy_n(payload.data() + done, n, codes_.data() + at);
    });
    for_each_word(timestamp, samples, [&](std::uint32_t word, std::uint64_t mask) { present_[word] |= mask; });
    arrival_ms_[(timestamp % kRing) / kBlock] = arrival_ms;
    if (static_cast<std::int32_t>(timestamp + samples - newest_end_) > 0) newest_end_ = timestamp + samples;
}

void RecordedG711In::conceal() {
    if (!concealing_) {
        std::vector<std::int16_t> history(concealer_.history_samples());
        const auto n = static_cast<std::uint32_t>(history.size());
        decode(play_ - n, n, history.data());
        concealer_.observe(history);
        concealing_ = true;
    }
    const codec::Pcm pcm = concealer_.fill(kFrame);
    std::copy(pcm.begin(), pcm.end(), out_.begin());
    ++stats_.expanded;
}

void RecordedG711In::advance(bool concealed) {
    forget(play_, kFrame);
    play_ += kFrame;
    concealed_frames_ = concealed_frames_ << 1 | (concealed ? 1U : 0U);
}

std::span<const std::int16_t> RecordedG711In::pull(std::int64_t now_ms) {
    if (!started_ || start_ticks_ > 0) {
        if (started_) --start_ticks_;
        ++stats_.buffering;
        return {};
    }
    const std::int32_t level = ahead_of_play(newest_end_);
    level_ = static_cast<std::uint32_t>(std::max(level, 0));
    stats_.max_buffer_delay_ms = std::max<std::int64_t>(stats_.max_buffer_delay_ms, level_ / (kRate / 1000));
    if (grow_) {
        grow_ = false;
        conceal();
        return out_;
    }
    if (level <= 0) {
        // Nothing to play yet: wait, concealing, for the frame to come.
        conceal();
        if (++stalled_ >= kPauseTicks) started_ = false;
        return out_;
    }
    window_min_level_ = std::min(window_min_level_, level_);
    if (++window_ticks_ == kWindowTicks) {
        if (window_min_level_ >= kSpareLevel) {
            advance(false);
            ++stats_.accelerated;
            ++stats_.discarded;
        }
        window_min_level_ = kRing;
        window_ticks_ = 0;
    }
    if (all_present(play_, kFrame)) {
        decode(play_, kFrame, out_.data());
        if (concealing_) {
            concealer_.observe(out_);  // cross-fades out of the concealment
            concealing_ = false;
        }
        ++stats_.normal;
        stats_.waiting_ms_total += std::max<std::int64_t>(0, now_ms - arrival_ms_[(play_ % kRing) / kBlock]);
        advance(false);
    } else {
        ++stats_.lost;
        conceal();
        advance(true);
    }
    return out_;
}

std::uint32_t RecordedG711In::held_frames() const {
    if (!started_) return 0;
    const std::int32_t level = ahead_of_play(newest_end_);
    return level > 0 ? (static_cast<std::uint32_t>(level) + kFrame - 1) / kFrame : 0;
}

jitter::Stats RecordedG711In::stats() const {
    jitter::Stats s = stats_;
    s.buffer_delay_ms = level_ / (kRate / 1000);
    s.target_delay_ms = s.buffer_delay_ms;
    s.buffered_frames = level_ / kFrame;
    return s;
}

}  // namespace callbox::engine
