#include "rtp/stats.h"

#include <algorithm>

namespace callbox::rtp {

namespace {
constexpr std::uint32_t kSeqMod = 1u << 16;
constexpr unsigned kWindowBits = 64;
}  // namespace

void ReceiveStats::init_seq(std::uint16_t seq) {
    base_seq_ = seq;
    max_seq_ = seq;
    bad_seq_ = kSeqMod + 1;  // so seq == bad_seq_ is false
    cycles_ = 0;
    received_ = 0;
    received_prior_ = 0;
    expected_prior_ = 0;
    window_ = 1;
}

Disposition ReceiveStats::update(std::uint16_t seq, std::uint32_t timestamp, std::uint32_t arrival) {
    if (!started_) {
        started_ = true;
        init_seq(seq);
        max_seq_ = static_cast<std::uint16_t>(seq - 1);
        probation_ = kMinSequential;
    }
    const auto udelta = static_cast<std::uint16_t>(seq - max_seq_);
    if (probation_ > 0) {
        // A.1 compares with max_seq + 1 in int arithmetic, which never matches
        // across 65535 -> 0; the 16-bit sum here lets probation pass at the wrap.
        if (seq == static_cast<std::uint16_t>(max_seq_ + 1)) {
            --probation_;
            max_seq_ = seq;
            if (probation_ == 0) {
                init_seq(seq);
                ++received_;
                update_jitter(timestamp, arrival);
                return Disposition::in_order;
            }
        } else {
            probation_ = kMinSequential - 1;
            max_seq_ = seq;
        }
        return Disposition::probation;
    }
    Disposition result = Disposition::in_order;
    if (udelta == 0) {
        result = Disposition::duplicate;
        ++duplicates_;
    } else if (udelta < kMaxDropout) {
        if (seq < max_seq_) cycles_ += kSeqMod;
        max_seq_ = seq;
        window_ = udelta >= kWindowBits ? 1 : (window_ << udelta) | 1;
    } else if (udelta <= kSeqMod - kMaxMisorder) {
        if (seq != bad_seq_) {
            bad_seq_ = (seq + 1u) & (kSeqMod - 1);
            return Disposition::bad_jump;
        }
        init_seq(seq);
        result = Disposition::restarted;
    } else {
        result = classify_older(udelta);
    }
    ++received_;
    if (result != Disposition::duplicate) update_jitter(timestamp, arrival);
    return result;
}

Disposition ReceiveStats::classify_older(std::uint16_t udelta) {
    const unsigned back = kSeqMod - udelta;
    if (back < kWindowBits) {
        const std::uint64_t bit = std::uint64_t{1} << back;
        if (window_ & bit) {
            ++duplicates_;
            return Disposition::duplicate;
        }
        window_ |= bit;
    }
    ++reordered_;
    return Disposition::reordered;
}

void ReceiveStats::update_jitter(std::uint32_t timestamp, std::uint32_t arrival) {
    const std::uint32_t transit = arrival - timestamp;
    if (have_transit_) {
        // Transit times are compared modulo 2^32, as A.8's int arithmetic does.
        const auto d = static_cast<std::int32_t>(transit - transit_);
        const std::uint32_t magnitude = d < 0 ? 0u - static_cast<std::uint32_t>(d) : static_cast<std::uint32_t>(d);
        jitter_q4_ += magnitude - ((jitter_q4_ + 8) >> 4);
    }
    have_transit_ = true;
    transit_ = transit;
}

ReceiveSnapshot ReceiveStats::snapshot() const {
    ReceiveSnapshot s;
    s.validated = started_ && probation_ == 0;
    s.duplicates = duplicates_;
    s.reordered = reordered_;
    s.jitter = jitter_q4_ >> 4;
    if (!s.validated) return s;
    s.extended_highest = cycles_ + max_seq_;
    s.expected = std::int64_t{s.extended_highest} - base_seq_ + 1;
    s.received = received_;
    s.lost = s.expected - received_;
    return s;
}

LossReport ReceiveStats::report() {
    const ReceiveSnapshot s = snapshot();
    LossReport r;
    r.extended_highest = s.extended_highest;
    r.jitter = s.jitter;
    r.cumulative_lost = static_cast<std::int32_t>(std::clamp<std::int64_t>(s.lost, -0x800000, 0x7FFFFF));
    const std::int64_t expected_interval = s.expected - expected_prior_;
    const std::int64_t received_interval = s.received - received_prior_;
    expected_prior_ = s.expected;
    received_prior_ = s.received;
    const std::int64_t lost_interval = expected_interval - received_interval;
    if (expected_interval > 0 && lost_interval > 0) {
        // All lost gives 256/256, which the 8-bit field cannot hold: report 255.
        r.fraction_lost = static_cast<std::uint8_t>(
            std::min<std::int64_t>((lost_interval << 8) / expected_interval, 255));
    }
    return r;
}

}  // namespace callbox::rtp
