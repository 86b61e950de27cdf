// Per-source receive statistics, RFC 3550 appendix A.1 (sequence validation
// with probation and wrap), A.3 (expected, lost, fraction lost) and A.8
// (interarrival jitter), plus duplicate and reordering counts the RFC leaves out.
// core/_reference.py holds the same algorithm in Python; the tests hold the two
// to the same results packet for packet.
#pragma once

#include <cstdint>

namespace callbox::rtp {

// What update() made of a packet.
enum class Disposition : int {
    probation = 0,    // source not yet validated (A.1 MIN_SEQUENTIAL): not counted
    in_order = 1,     // newest packet so far (possibly after a gap)
    duplicate = 2,    // a sequence number already received
    reordered = 3,    // older than the newest, first time seen
    bad_jump = 4,     // a jump beyond MAX_DROPOUT: not counted unless the next one follows it
    restarted = 5,    // the sender restarted its sequence (two in a row after a jump)
};

struct ReceiveSnapshot {
    std::uint32_t extended_highest = 0;  // cycles + highest sequence
    std::int64_t expected = 0;
    std::int64_t received = 0;           // counts duplicates, as RFC 3550 does
    std::int64_t lost = 0;               // expected - received (may go negative with duplicates)
    std::uint32_t jitter = 0;            // in timestamp units
    std::uint64_t duplicates = 0;
    std::uint64_t reordered = 0;
    bool validated = false;              // probation passed
};

// One RTCP report block's loss fields (A.3), from the interval since the last call.
struct LossReport {
    std::uint8_t fraction_lost = 0;      // fixed point, /256
    std::int32_t cumulative_lost = 0;    // clamped to 24-bit signed
    std::uint32_t extended_highest = 0;
    std::uint32_t jitter = 0;
};

class ReceiveStats {
public:
    // `arrival` is the arrival time in the stream's timestamp units (A.8).
    Disposition update(std::uint16_t seq, std::uint32_t timestamp, std::uint32_t arrival);
    ReceiveSnapshot snapshot() const;
    // Fills an RTCP report block and starts a new interval for fraction_lost.
    LossReport report();

    static constexpr int kMaxDropout = 3000;
    static constexpr int kMaxMisorder = 100;
    static constexpr int kMinSequential = 2;

private:
    void init_seq(std::uint16_t seq);
    void update_jitter(std::uint32_t timestamp, std::uint32_t arrival);
    Disposition classify_older(std::uint16_t udelta);

    bool started_ = false;
    std::uint16_t max_seq_ = 0;
    std::uint32_t cycles_ = 0;
    std::uint32_t base_seq_ = 0;
    std::uint32_t bad_seq_ = 0;
    int probation_ = 0;
    std::int64_t received_ = 0;
    std::int64_t expected_prior_ = 0;
    std::int64_t received_prior_ = 0;
    bool have_transit_ = false;
    std::uint32_t transit_ = 0;
    std::uint32_t jitter_q4_ = 0;  // jitter * 16 (A.8 integer form)
    // Bit i set: extended_highest - i was received. Tells duplicates from late packets.
    std::uint64_t window_ = 0;
    std::uint64_t duplicates_ = 0;
    std::uint64_t reordered_ = 0;
};

}  // namespace callbox::rtp
