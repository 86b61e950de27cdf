// The prompt player: a playlist of prompts and silences played in order
// (once, or looped for music on hold) into a leg as an engine::AudioSource,
// ended early by a barge-in digit or stop(). Prompts are resampled to the
// output rate when the player is made, so a frame costs a copy from shared,
// immutable PCM: no allocation, no lock, no DSP on the worker's tick.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "engine/audio_source.h"
#include "player/prompt.h"

namespace callbox::player {

/// One entry of a playlist: a prompt, or ``silence_ms`` of silence when
/// ``prompt`` is null.
struct PlaylistItem {
    std::shared_ptr<const Prompt> prompt;
    unsigned silence_ms = 0;
};

/// Where a player is.
struct PlaybackPosition {
    std::size_t item = 0;            // index in the playlist (its size once finished)
    std::size_t offset_samples = 0;  // into that item, at the output rate
    std::uint64_t played_samples = 0;
    std::uint64_t loops = 0;  // times a looping playlist has started over
};

class Player final : public engine::AudioSource {
public:
    /// ``sample_rate`` is the output rate (8000, 16000 or 48000); ``barge_in``
    /// the DTMF digits that end playback (any of 0-9 * # A-D). A looping
    /// playlist must last longer than 0 ms. std::invalid_argument (or
    /// codec::CodecError for a bad digit) on bad settings.
    Player(const std::vector<PlaylistItem>& playlist, unsigned sample_rate, bool loop, std::string_view barge_in);

    unsigned sample_rate() const override { return sample_rate_; }
    /// Any length of ``out`` works; the engine asks for 20 ms. The last frame
    /// of a playlist that does not loop is padded with silence.
    bool next(std::span<std::int16_t> out) override;
    bool on_digit(char digit) override;
    engine::SourceEnd end() const override;

    /// Ends playback ("stopped"): the next next() returns false.
    void stop();
    bool ended() const { return end_.has_value(); }
    PlaybackPosition position() const { return position_; }

private:
    // A playlist item at the output rate: samples of `audio`, or silence if it is null.
    struct Segment {
        std::shared_ptr<const Prompt> audio;
        std::size_t samples;
    };

    // Items of 0 samples play nothing: the position never rests on one, so a
    // playlist ending in one ends with its last sample, not a frame later.
    void skip_empty_segments();

    std::vector<Segment> segments_;
    unsigned sample_rate_;
    bool loop_;
    std::array<bool, 128> barge_in_{};  // by ASCII code
    PlaybackPosition position_;
    std::optional<engine::SourceEnd> end_;
};

}  // namespace callbox::player
