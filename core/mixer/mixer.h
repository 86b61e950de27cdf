// The conference mixer: N-1 mixes of 16-bit linear PCM frames, one sample rate,
// 20 ms per tick. Codec-agnostic: the engine decodes before put() and encodes
// after mix(). All arithmetic is integer so core/_reference.py matches it bit
// for bit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace callbox::mixer {

// Gains are Q12 (4096 = 0 dB); +20 dB is the most a participant gets, so a
// scaled sample fits 32 bits and 1024 of them sum without overflow.
inline constexpr std::int32_t kUnityGainQ12 = 4096;
inline constexpr std::int32_t kMaxGainQ12 = 40960;
inline constexpr std::size_t kMaxParticipants = 1024;

// Mean square of a talking frame (-40 dBFS): the default talker threshold,
// and the level below which the engine's jitter buffer counts audio as quiet.
inline constexpr std::int64_t kTalkThreshold = 107374;

struct Config {
    std::uint32_t sample_rate = 8000;             // 8000, 16000, 32000 or 48000
    std::int64_t talk_threshold = kTalkThreshold;  // mean square of a talking frame
    std::uint32_t hangover_frames = 15;     // quiet frames before "stopped talking"
};

struct TalkEvent {
    std::uint32_t participant;
    bool talking;
};

// One listener's own mix: for a participant who is in the sum this tick or
// does not hear everyone who is (routing), so the common mix would be wrong.
struct OwnMix {
    std::uint32_t participant;
    std::vector<std::int16_t> pcm;
};

class Mixer {
public:
    explicit Mixer(const Config& config);  // throws std::invalid_argument on a bad config

    std::size_t frame_samples() const { return frame_samples_; }

    // Membership and controls; an unknown or duplicate id throws std::invalid_argument.
    void add(std::uint32_t id);
    void remove(std::uint32_t id);
    void set_gain(std::uint32_t id, std::int32_t gain_q12);
    void set_muted(std::uint32_t id, bool muted);
    // Routing: whether `listener` hears `talker` (default: everyone hears everyone).
    void set_hears(std::uint32_t listener, std::uint32_t talker, bool hears);
    bool hears(std::uint32_t listener, std::uint32_t talker) const;
    bool talking(std::uint32_t id) const;
    std::vector<std::uint32_t> participants() const;

    // This tick's frame from `id` (frame_samples() long); a second put in one
    // tick replaces the first. A participant with no frame is silent.
    void put(std::uint32_t id, std::span<const std::int16_t> pcm);

    // Ends the tick: sums once, derives every output, limits, detects talkers.
    // Results stay valid until the next mix().
    void mix();
    std::span<const std::int16_t> common() const { return common_out_; }
    const std::vector<std::uint32_t>& shared() const { return shared_; }
    std::span<const OwnMix> own() const { return {own_.data(), own_count_}; }
    const std::vector<TalkEvent>& events() const { return events_; }
    std::int32_t limiter_gain_q15() const { return limiter_gain_; }

private:
    struct Participant {
        std::uint32_t id;
        std::int32_t gain_q12 = kUnityGainQ12;
        bool muted = false;
        bool has_frame = false;
        bool talking = false;
        std::uint32_t quiet_frames = 0;
        std::vector<std::int16_t> frame;
        std::vector<std::int32_t> contribution;
        std::vector<std::uint32_t> deaf_to;  // talkers this listener does not hear
    };

    Participant& find(std::uint32_t id);
    const Participant& find(std::uint32_t id) const;
    void detect_talk(Participant& p);
    bool excludes(const Participant& listener, const Participant& talker) const;
    void limit(std::span<const std::int32_t> in, std::span<std::int16_t> out, std::int32_t next_gain) const;

    Config config_;
    std::size_t frame_samples_;
    std::size_t attack_samples_;
    std::vector<Participant> participants_;  // in join order
    std::vector<std::int32_t> total_;
    std::vector<std::vector<std::int32_t>> own_sums_;
    std::vector<const Participant*> contributors_;
    std::int32_t limiter_gain_;
    std::vector<std::int16_t> common_out_;
    std::vector<std::uint32_t> shared_;
    std::vector<OwnMix> own_;  // a pool: the first own_count_ are this tick's
    std::size_t own_count_ = 0;
    std::vector<TalkEvent> events_;
};

}  // namespace callbox::mixer
