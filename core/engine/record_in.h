// The received audio of a G.711 leg that nothing but recordings listens to
// (a same-codec relay, recorded: most calls of a call center). Nobody hears
// this audio live, so low delay buys nothing and every frame counts: instead
// of the adaptive jitter buffer and the generic decoder (docs/media.md,
// "Recording a relay"), payloads are written into a ring by RTP timestamp and
// played a little behind the newest, decoded by table. The delay grows at
// once when a frame comes too late and shrinks by a frame at a time when it
// has been more than needed for two seconds; a sender that pauses (DTX, hold)
// has the recording conceal and then stay silent rather than fall behind.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "codec/g711.h"
#include "codec/plc.h"
#include "engine/media.h"
#include "jitter/jitter.h"

namespace callbox::engine {

class RecordedG711In final : public AudioIn {
public:
    explicit RecordedG711In(bool alaw) : decode_codes_(codec::g711::block_decoder(alaw)) {}

    int sample_rate() const override { return kRate; }
    void put(std::span<const std::uint8_t> payload, std::uint32_t timestamp, std::uint16_t sequence,
             std::uint32_t source, std::int64_t arrival_ms) override;
    std::span<const std::int16_t> pull(std::int64_t now_ms) override;
    jitter::Stats stats() const override;
    bool in_conversation() const override { return false; }
    std::uint32_t held_frames() const override;

    // Samples (one per timestamp unit) the ring holds: 512 ms.
    static constexpr std::uint32_t kRing = 4096;

private:
    static constexpr int kRate = 8000;
    static constexpr std::uint32_t kFrame = 160;
    // Arrival times are kept per block of samples, for the waiting-time statistics.
    static constexpr std::uint32_t kBlock = 64;

    void restart(std::uint32_t timestamp, std::uint32_t source);
    // Calls f(word, mask) for the presence bits of samples [from, from + count).
    template <class F>
    static void for_each_word(std::uint32_t from, std::uint32_t count, F f);
    // Calls f(index, n, done) for the ring's pieces of samples [from, from + count)
    // (two where they wrap its end); `done` samples came before the piece.
    template <class F>
    static void for_each_piece(std::uint32_t from, std::uint32_t count, F f);
    bool all_present(std::uint32_t from, std::uint32_t count) const;
    bool present(std::uint32_t sample) const { return (present_[sample % kRing / 64] >> (sample % 64) & 1U) != 0; }
    void forget(std::uint32_t from, std::uint32_t count);
    void decode(std::uint32_t from, std::uint32_t count, std::int16_t* out) const;
    // One frame of concealment into out_; the concealer learns the audio
    // before play_ from the ring when a loss starts.
    void conceal();
    // Past the frame at play_, played or concealed.
    void advance(bool concealed);
    std::int32_t ahead_of_play(std::uint32_t timestamp) const { return static_cast<std::int32_t>(timestamp - play_); }

    codec::g711::BlockDecode decode_codes_;
    std::array<std::uint8_t, kRing> codes_{};
    std::array<std::uint64_t, kRing / 64> present_{};
    std::array<std::int64_t, kRing / kBlock> arrival_ms_{};
    bool started_ = false;
    std::uint32_t source_ = 0;
    std::uint32_t play_ = 0;        // timestamp of the next sample to play
    std::uint32_t newest_end_ = 0;  // one past the newest sample received
    int start_ticks_ = 0;
    std::uint32_t concealed_frames_ = 0;  // bit i: the frame i + 1 ticks back was concealed
    bool grow_ = false;             // a frame came too late: wait one tick more from now on
    int stalled_ = 0;               // ticks waited in a row with nothing to play
    std::uint32_t window_min_level_ = kRing;
    int window_ticks_ = 0;
    std::uint32_t level_ = 0;
    bool concealing_ = false;
    codec::PitchConcealer concealer_{kRate};
    std::array<std::int16_t, kFrame> out_{};
    jitter::Stats stats_;
};

}  // namespace callbox::engine
