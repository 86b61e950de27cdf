// The adaptive jitter buffer, in the spirit of WebRTC NetEQ: it holds frames
// (codec payload, RTP timestamp, sequence, arrival time, duration) between the
// network and a 20 ms playout tick and says, each tick, what the caller should
// play. It never decodes: "expand" means "conceal one frame now" and the
// caller's codec conceals. All arithmetic is integer so the Python twin in
// core/_reference.py makes the same decisions on the same input; docs/media.md
// ("Jitter buffer") describes the algorithm.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <span>
#include <vector>

namespace callbox::jitter {

// What put() did with a frame.
enum class PutResult : int {
    buffered = 0,   // held for playout
    duplicate = 1,  // already received (by sequence, or a frame with its timestamp is held)
    late = 2,       // its playout slot has passed (late loss)
    flushed = 3,    // held, after flushing the buffer: new source, timestamp jump or overflow
};

// What the caller plays this tick.
enum class Decision : int {
    buffering = 0,          // not started (or restarting): filling to the target; play silence
    normal = 1,             // play the frame
    merge = 2,              // play the frame; it follows concealment, so smooth the join
    expand = 3,             // no frame for this slot: conceal one frame
    accelerate = 4,         // one frame was dropped to shrink the buffer; play the frame given
    preemptive_expand = 5,  // buffer below target: stretch (play one frame of low-energy audio)
};

struct Settings {
    std::uint32_t clock_rate = 8000;  // timestamp units per second
    std::int64_t min_delay_ms = 20;
    std::int64_t max_delay_ms = 1000;
    std::size_t max_frames = 200;     // a put beyond this flushes the buffer
};

struct Output {
    Decision decision = Decision::buffering;
    bool has_frame = false;
    std::vector<std::uint8_t> payload;
    std::uint32_t timestamp = 0;
    std::uint16_t sequence = 0;
    std::uint32_t samples = 0;
};

// Counters since construction. Every received frame ends in exactly one of
// duplicates, late, played (normal + merged + accelerated), discarded or
// still buffered; every tick is exactly one decision.
struct Stats {
    std::int64_t received = 0;
    std::int64_t duplicates = 0;
    std::int64_t late = 0;
    std::int64_t lost = 0;        // sequence numbers never received
    std::int64_t discarded = 0;   // dropped unplayed: flushes and accelerate
    std::int64_t flushes = 0;
    std::int64_t buffering = 0;   // ticks per decision
    std::int64_t normal = 0;
    std::int64_t merged = 0;
    std::int64_t expanded = 0;
    std::int64_t accelerated = 0;
    std::int64_t preemptive_expanded = 0;
    std::int64_t waiting_ms_total = 0;  // arrival to playout, summed over played frames
    std::int64_t target_delay_ms = 0;
    std::int64_t buffer_delay_ms = 0;
    std::int64_t max_buffer_delay_ms = 0;
    std::int64_t buffered_frames = 0;
};

class JitterBuffer {
public:
    // Throws std::invalid_argument for settings that cannot work.
    explicit JitterBuffer(const Settings& settings);

    // A frame from the network. `source` is the SSRC: a new one flushes.
    PutResult put(std::span<const std::uint8_t> payload, std::uint32_t timestamp, std::uint16_t sequence,
                  std::uint32_t samples, std::int64_t arrival_ms, std::uint32_t source);
    // One playout tick. `low_energy` says the caller's audio around here is quiet,
    // so time-stretching (accelerate, preemptive expand) would not be heard.
    void get(std::int64_t now_ms, bool low_energy, Output& out);

    // The frame that plays next, when the slot just concealed was the one right
    // before it (empty otherwise): a codec with in-band FEC (Opus) rebuilds the
    // lost frame from it.
    std::span<const std::uint8_t> next_held() const;

    std::int64_t target_delay_ms() const { return target_ms_; }
    std::int64_t buffer_delay_ms() const { return to_ms(level()); }
    Stats stats() const;

    static constexpr std::int64_t kBucketMs = 20;
    static constexpr int kBuckets = 100;

private:
    struct Slot {
        std::int64_t timestamp;  // extended (unwrapped)
        std::uint16_t sequence;
        std::uint32_t samples;
        std::int64_t arrival_ms;
        std::vector<std::uint8_t> payload;
    };
    struct Peak {
        std::int64_t arrival_ms;
        std::int64_t delay_ms;
    };
    struct Transit {
        std::int64_t arrival_ms;
        std::int64_t transit;
    };

    std::int64_t to_ms(std::int64_t samples) const;
    std::int64_t to_samples(std::int64_t ms) const;
    std::int64_t level() const;
    void reset_timeline(bool new_sequence);
    void rebase_sequence();
    bool sequence_seen(std::uint16_t sequence);
    std::int64_t update_delay(std::int64_t timestamp, std::int64_t arrival_ms);
    void note_peak(std::int64_t arrival_ms, std::int64_t relative_ms);
    void update_target(std::int64_t arrival_ms);
    std::int64_t histogram_target_ms() const;
    void play(Decision decision, std::int64_t now_ms, Output& out);
    Decision decide(bool low_energy);

    // A payload buffer for a new slot, and one given back: frames cycle
    // through a few buffers instead of one allocation each.
    std::vector<std::uint8_t> take_buffer(std::span<const std::uint8_t> payload);
    void give_back(std::vector<std::uint8_t>&& buffer);
    // Drops the frame at the front; its buffer is given back.
    void pop_front();

    Settings settings_;
    // Sorted by timestamp. A vector rather than a deque: it holds a few
    // frames, which arrive at its end and leave from its front, and a deque
    // allocates and frees a block whenever its front crosses one.
    std::vector<Slot> slots_;
    std::vector<std::vector<std::uint8_t>> spare_buffers_;
    bool have_source_ = false;
    std::uint32_t source_ = 0;
    std::int64_t last_timestamp_ = 0;  // reference for unwrapping

    // Sequence tracking for duplicates and loss.
    bool have_sequence_ = false;
    std::int64_t base_sequence_ = 0;
    std::int64_t highest_sequence_ = 0;
    std::uint64_t seen_ = 0;  // bit i: highest - i received
    std::int64_t unique_ = 0;
    std::int64_t lost_prior_ = 0;

    // Playout timeline.
    bool started_ = false;
    std::int64_t next_timestamp_ = 0;
    std::uint32_t frame_samples_ = 0;  // the last frame's duration, for concealment
    bool after_expand_ = false;
    bool stalled_ = false;  // expanded on an empty buffer since the last frame played
    // Ticks the timeline stood still on an empty buffer and that the frames
    // after it did not make up: delay added, to be removed once held in surplus.
    std::int64_t stall_debt_ = 0;
    std::int64_t filtered_level_q8_ = 0;
    // The caller's playout ticks: a frame counts as arriving at the tick that can play it.
    bool have_tick_ = false;
    std::int64_t last_tick_ms_ = 0;
    std::int64_t tick_ms_ = 0;

    // Delay estimation.
    std::deque<Transit> transits_;  // increasing transit: its front is the window minimum
    // Q30 probabilities, summing to 1 << 30: each fits 32 bits, which halves
    // the memory every received frame updates.
    std::array<std::int32_t, kBuckets> histogram_{};
    std::int64_t histogram_count_ = 0;
    std::array<Peak, 8> peaks_{};
    std::size_t peak_count_ = 0;
    std::int64_t last_late_ms_ = 0;  // arrival of the last late frame counted in a peak
    std::int64_t target_ms_ = 0;

    Stats stats_;
};

}  // namespace callbox::jitter
