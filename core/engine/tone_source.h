// A call-progress tone (codec/tones.h) as an AudioSource, so a leg can play
// ringback or busy to its far end, and so the playback path has a source of
// its own until the prompt player arrives.
#pragma once

#include <optional>

#include "codec/tones.h"
#include "engine/audio_source.h"

namespace callbox::engine {

class ToneSource final : public AudioSource {
public:
    // Plays `spec` for `duration_ms` (0: until stopped); a DTMF digit ends it
    // when `barge_in` is set.
    ToneSource(const codec::ToneSpec& spec, int duration_ms, bool barge_in);

    unsigned sample_rate() const override { return 8000; }
    bool next(std::span<std::int16_t> out) override;
    bool on_digit(char digit) override;
    SourceEnd end() const override;

private:
    codec::ToneGenerator generator_;
    std::optional<std::size_t> remaining_;  // samples left; none: until stopped
    bool barge_in_;
    std::optional<char> digit_;
};

}  // namespace callbox::engine
