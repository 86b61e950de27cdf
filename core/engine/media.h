// The audio of a leg on its worker's tick: received frames turned into 20 ms
// of PCM through a jitter buffer and a decoder, PCM encoded for the far end,
// and telephone-events tracked into digits. Everything here sees codec
// payloads with their timing and PCM, never RTP headers, so any leg kind
// (RTP, E1 channel, WebRTC) can use it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "codec/codec.h"
#include "codec/resample.h"
#include "codec/telephone_event.h"
#include "jitter/jitter.h"

namespace callbox::engine {

inline constexpr int kFrameMs = 20;

// Codec names compare without case (RFC 4566).
std::string lower_case(std::string name);

// Samples in one tick's frame at `sample_rate`.
constexpr std::size_t frame_samples(int sample_rate) { return static_cast<std::size_t>(sample_rate / 1000 * kFrameMs); }

// Converts 20 ms frames from whatever rate they come at to one output rate,
// keeping its resampler while the input rate stays, so a continuous stream
// joins smoothly (a new input rate starts a new one).
class RateConverter {
public:
    explicit RateConverter(int out_rate) : out_rate_(out_rate) {}
    int out_rate() const { return out_rate_; }
    // The frame at out_rate(); valid until the next call.
    std::span<const std::int16_t> convert(std::span<const std::int16_t> pcm, int in_rate);

private:
    int out_rate_;
    std::optional<codec::Resampler> resampler_;
    codec::Pcm out_;
};

// A leg's received audio, turned into 20 ms of PCM per tick.
class AudioIn {
public:
    virtual ~AudioIn() = default;
    virtual int sample_rate() const = 0;
    // A received frame; `source` changes when the sender's stream does.
    virtual void put(std::span<const std::uint8_t> payload, std::uint32_t timestamp, std::uint16_t sequence,
                     std::uint32_t source, std::int64_t arrival_ms) = 0;
    // This tick's 20 ms at sample_rate(): decoded, concealed, or, while the
    // buffer fills, nothing (an empty span). Valid until the next pull().
    virtual std::span<const std::int16_t> pull(std::int64_t now_ms) = 0;
    virtual jitter::Stats stats() const = 0;
    // Whether the conversation hears this audio (its buffer delay is the call's).
    virtual bool in_conversation() const = 0;
    // Frames received and not yet played that pull() would give out now,
    // without waiting for the network; 0 where playout follows the clock only.
    virtual std::uint32_t held_frames() const { return 0; }
};

// A leg's received audio: a jitter buffer fed with each frame's arrival time,
// drained once per tick into a decoder that conceals what is missing.
class ReceivePath final : public AudioIn {
public:
    // codec::CodecError for a codec the factory does not know.
    ReceivePath(const std::string& codec, const codec::FmtpParams& fmtp, std::uint32_t clock_rate);

    int sample_rate() const override { return decoder_->info().sample_rate; }
    void put(std::span<const std::uint8_t> payload, std::uint32_t timestamp, std::uint16_t sequence,
             std::uint32_t source, std::int64_t arrival_ms) override;
    std::span<const std::int16_t> pull(std::int64_t now_ms) override;
    jitter::Stats stats() const override { return buffer_.stats(); }
    bool in_conversation() const override { return true; }

private:
    // Timestamp units a payload covers (the jitter buffer's frame duration).
    std::uint32_t duration_of(std::span<const std::uint8_t> payload) const;
    void decode(std::span<const std::uint8_t> payload);
    // One frame of concealment, rebuilt from `next` (Opus FEC) when given.
    void conceal(std::span<const std::uint8_t> next);
    void append(const codec::Pcm& pcm);

    // How a payload's length maps to its duration, decided once per codec
    // rather than by name on every packet.
    enum class Framing { g729, opus, octet_per_sample };
    static Framing framing_of(const std::string& codec);

    Framing framing_;
    std::unique_ptr<codec::Decoder> decoder_;
    jitter::JitterBuffer buffer_;
    jitter::Output out_;
    // Decoded audio (a peer's ptime need not be 20 ms); its first played_
    // samples are the frame pull() last returned, dropped at the next pull().
    codec::Pcm pending_;
    std::size_t played_ = 0;
    bool low_energy_ = true;
};

// A leg's encoder: 20 ms of PCM at any of 8, 16 or 48 kHz to one payload.
class SendPath {
public:
    // codec::CodecError for a codec or fmtp the factory refuses.
    SendPath(const std::string& codec, const codec::FmtpParams& fmtp);

    // The payload for 20 ms of `pcm` at `sample_rate`; empty when the codec
    // sends nothing for it (G.729 annex B during silence).
    const codec::Payload& encode(std::span<const std::int16_t> pcm, int sample_rate);

private:
    std::unique_ptr<codec::Encoder> encoder_;
    RateConverter converter_;
    codec::Payload payload_;
    int source_rate_ = 0;  // what the encoder was last told the audio was sampled at
};

// A DTMF digit heard on a leg.
struct Digit {
    char digit = 0;
    int duration_ms = 0;
};

// Turns received RFC 4733 telephone-event payloads into digits: one start
// per digit (for barge-in, at once) and one end with its duration, however
// many updates and retransmitted end packets arrive. A digit whose end
// packets are all lost ends when the next one starts or when it goes quiet.
class TelephoneEventTracker {
public:
    explicit TelephoneEventTracker(std::uint32_t clock_rate) : clock_rate_(clock_rate) {}

    struct Result {
        std::optional<char> started;
        std::optional<Digit> ended;
    };
    // One telephone-event payload of the stream `stream`; malformed payloads are ignored.
    Result receive(std::span<const std::uint8_t> payload, std::uint32_t timestamp, std::uint64_t stream,
                   std::int64_t now_ms);
    // The digit in progress, if nothing has been heard of it for a while.
    std::optional<Digit> expire(std::int64_t now_ms);

private:
    struct Current {
        char digit;
        std::uint32_t timestamp;
        std::uint32_t duration;
        std::int64_t last_heard_ms;
    };
    Digit finish(const Current& current) const;

    std::uint32_t clock_rate_;
    codec::TelephoneEventReceiver receiver_;
    std::uint64_t stream_ = 0;
    std::optional<Current> current_;  // a digit started and not yet reported ended
};

}  // namespace callbox::engine
