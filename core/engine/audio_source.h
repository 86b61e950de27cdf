// The contract between a leg and what plays audio into it on the worker's
// tick: a prompt player, music on hold, a tone. It carries 16-bit linear PCM,
// never codec payloads or RTP, so any leg kind (RTP, E1 channel, WebRTC) can
// take it; the leg resamples and encodes.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace callbox::engine {

// Why a source stopped producing audio.
struct SourceEnd {
    std::string reason;  // "finished", "digit" (barge-in), "stopped", "error"
    std::string detail;  // the digit, or what went wrong
};

class AudioSource {
public:
    virtual ~AudioSource() = default;
    // Samples per second of what next() produces (8000, 16000 or 48000).
    virtual unsigned sample_rate() const = 0;
    // Fills all of `out` (20 ms at sample_rate()) and returns true, or returns
    // false once the source has ended (then `out` is left untouched).
    virtual bool next(std::span<std::int16_t> out) = 0;
    // A DTMF digit arrived on the leg; returns true if it ends the source (barge-in).
    virtual bool on_digit(char digit) = 0;
    // Why it ended; meaningful once next() has returned false or on_digit() true.
    virtual SourceEnd end() const = 0;
};

}  // namespace callbox::engine
