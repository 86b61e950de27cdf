// In-band DTMF on 8 kHz audio with spandsp: detection (Goertzel filters with
// twist, level and duration checks) and generation.
#pragma once

#include <spandsp.h>

#include <span>
#include <string>
#include <string_view>

#include "codec/codec.h"
#include "codec/spandsp_ptr.h"

namespace callbox::codec {

class DtmfDetector {
public:
    /// Twists are the largest level differences accepted between the two
    /// tones, in dB: ``twist`` with the low-group tone louder, ``reverse_twist``
    /// with the high-group tone louder. spandsp measures twist on 12.75 ms
    /// blocks, so a tone pair right at the limit flickers; 10 dB accepts the
    /// 8 dB that ITU-T Q.24 asks for in both directions. ``min_level_dbm0``
    /// is the weakest tone accepted.
    DtmfDetector(int twist = 10, int reverse_twist = 10, int min_level_dbm0 = -30);
    // spandsp holds a pointer to this object for its callback.
    DtmfDetector(const DtmfDetector&) = delete;
    DtmfDetector& operator=(const DtmfDetector&) = delete;

    /// Feeds 8 kHz audio; returns the digits that began in it, in order.
    std::string process(std::span<const std::int16_t> pcm);
    /// Tells the detector that ``samples`` of audio were lost.
    void skip(std::size_t samples);

private:
    static void on_digits(void* self, const char* digits, int len);

    std::string found_;
    SpandspPtr<dtmf_rx_state_t, dtmf_rx_free> state_;
};

class DtmfGenerator {
public:
    /// Level of the low-group tone in dBm0, ``twist`` dB by which the
    /// high-group tone is louder, tone and pause durations in ms.
    DtmfGenerator(int level_dbm0 = -10, int twist = 0, int on_ms = 100, int off_ms = 100);

    /// Queues digits (0-9 * # A-D); CodecError for others or when the queue is full.
    void queue(std::string_view digits);
    /// The next ``samples`` of 8 kHz audio: tones and pauses for the queued
    /// digits, then silence.
    Pcm generate(std::size_t samples);
    /// True until generate() has given out every queued digit and its pause.
    bool busy() const { return pending_ > 0; }

private:
    std::size_t digit_samples_;  // one digit's tone and pause at 8 kHz
    std::size_t pending_ = 0;    // samples of queued digits not yet generated
    SpandspPtr<dtmf_tx_state_t, dtmf_tx_free> state_;
};

}  // namespace callbox::codec
