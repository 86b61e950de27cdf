// Call-progress tones (dial, ringback, busy, congestion) by national plan,
// generated at 8 kHz with spandsp's cadenced tone generator.
#pragma once

#include <spandsp.h>

#include <string>
#include <string_view>
#include <vector>

#include "codec/codec.h"
#include "codec/spandsp_ptr.h"

namespace callbox::codec {

/// One tone: one or two frequencies at a level, with an on/off cadence
/// (off_ms 0: continuous).
struct ToneSpec {
    int frequency1;
    int frequency2;  // 0: a single frequency
    int level_dbm0;  // per frequency
    int on_ms;
    int off_ms;
};

/// The tone of a plan ("cn", "itu", "us") by name ("dial", "ringback",
/// "busy", "congestion"); CodecError naming the choices otherwise.
ToneSpec tone_spec(std::string_view plan, std::string_view tone);
std::vector<std::string> tone_plans();
std::vector<std::string> tone_names();

class ToneGenerator {
public:
    explicit ToneGenerator(const ToneSpec& spec);

    /// The next ``samples`` of the tone, continuing its cadence.
    Pcm generate(std::size_t samples);

private:
    SpandspPtr<tone_gen_descriptor_t, tone_gen_descriptor_free> descriptor_;
    SpandspPtr<tone_gen_state_t, tone_gen_free> state_;
};

}  // namespace callbox::codec
