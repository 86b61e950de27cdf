// In-band DTMF on 8 kHz audio: our own detector, shaped by ITU-T Q.24, and
// spandsp's generator.
#pragma once

#include <spandsp.h>

#include <array>
#include <complex>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "codec/codec.h"
#include "codec/spandsp_ptr.h"

namespace callbox::codec {

/// One float per tone of a DTMF group (4 rows or 4 columns), in one register.
using ToneLanes = Float4;
/// Both groups: rows, then columns.
using GroupLanes = std::array<ToneLanes, 2>;

/// Finds DTMF digits in 8 kHz audio. Eight single-bin DFTs (what a Goertzel
/// filter computes, here with its phase) run over Hann-windowed blocks of
/// 102 samples (12.75 ms) that start every 51 samples. A pair of consecutive
/// blocks is a hit for a digit when the strongest row and column tones are
/// the same in both and
///  - each tone's frequency, measured from how far its phase turns in 51
///    samples, is within 2.5% of nominal (Q.24: detect at 1.5%, reject at 3.5%);
///  - each tone is at least ``min_level_dbm0`` and their levels differ by no
///    more than the twists;
///  - the two tones hold at least 80% of the block's energy (a 15 dB
///    signal-to-noise ratio leaves 97%; speech, with its many harmonics and
///    formants, rarely gets there).
/// Three hits in a row (32 ms of steady tone, which every 40 ms tone holds)
/// declare the digit; two misses in a row (a 40 ms pause gives at least
/// four) end it, so the same digit may follow. While a digit is held, its
/// hits are judged with looser limits (3.5%, 3 dB lower, 3 dB more twist,
/// 60%), so a tone right at a limit is one digit, not a flicker of several.

class DtmfDetector {
public:
    /// Twists are the largest level differences accepted between the two
    /// tones, in dB: ``twist`` with the low-group tone louder, ``reverse_twist``
    /// with the high-group tone louder. The defaults leave 2 dB of margin over
    /// the 8 dB that ITU-T Q.24 asks for in both directions.
    /// ``min_level_dbm0`` is the weakest tone accepted.
    DtmfDetector(int twist = 10, int reverse_twist = 10, int min_level_dbm0 = -30);

    /// Feeds 8 kHz audio; returns the digits detected in it, in order (a
    /// digit is declared about 35 ms after its tone begins).
    std::string process(std::span<const std::int16_t> pcm);
    /// Tells the detector that ``samples`` of audio were lost: blocks that
    /// would span the gap are not judged, so a digit held across it stays one.
    void skip(std::size_t samples);

    static constexpr std::size_t kTones = 8;

private:
    using Bins = std::array<std::complex<float>, kTones>;
    // One 51-sample half-block's sums, weighted for either half of a block
    // (the first with the window's rising half, the second with its falling
    // half), phase from the half-block's start. Real and imaginary parts are
    // apart so the per-sample work is eight 4-wide multiply-adds.
    struct HalfBlock {
        GroupLanes first_re, first_im, second_re, second_im;
        float energy_first;   // sum of (w x)^2 with the rising half
        float energy_second;  // with the falling half
    };
    struct Block {
        Bins bins;    // phase referred to the block's start
        float power;  // mean square of the windowed samples, per unit of window
    };

    // What a pair of blocks shows of the digit whose tones are strongest in both.
    struct Measure {
        char digit;
        double deviation;  // the larger of the two tones' relative frequency errors
        float low, high;   // the tones' peak amplitudes
        float purity;      // their share of the block's energy
    };
    struct Limits {
        double max_deviation;
        float min_amplitude;
        float max_twist;  // as amplitude ratios
        float max_reverse_twist;
        float min_purity;
        bool pass(const Measure& m) const;
    };

    void accumulate(std::span<const std::int16_t> pcm);
    void end_half_block();
    std::optional<Measure> measure(const Block& earlier, const Block& later) const;
    void count(std::optional<char> hit);

    Limits detect_;  // to declare a digit
    Limits hold_;    // to go on holding it

    HalfBlock half_ = HalfBlock{};  // accumulating
    std::size_t filled_ = 0;        // samples in half_
    std::optional<HalfBlock> previous_half_;
    std::optional<Block> previous_block_;

    char digit_ = 0;       // the digit being held, 0 if none
    char candidate_ = 0;   // the digit of the current run of hits
    int hits_ = 0;         // hits in a row for candidate_
    int misses_ = 0;       // misses in a row
    std::string found_;
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
