#include "codec/tones.h"

#include <array>

namespace callbox::codec {

namespace {

struct Plan {
    std::string_view name;
    std::array<ToneSpec, 4> tones;  // in the order of kToneNames
};

constexpr std::array<std::string_view, 4> kToneNames{"dial", "ringback", "busy", "congestion"};

// China: YD/T 1040 (450 Hz for all call-progress tones). ITU: the CEPT
// choices most administrations follow under ITU-T E.180 (425 Hz). US: the
// Precise Tone Plan (ANSI T1.401) with its dual frequencies and levels.
constexpr std::array<Plan, 3> kPlans{{
    {"cn", {{{450, 0, -10, 1000, 0},
             {450, 0, -10, 1000, 4000},
             {450, 0, -10, 350, 350},
             {450, 0, -10, 700, 700}}}},
    {"itu", {{{425, 0, -10, 1000, 0},
              {425, 0, -10, 1000, 4000},
              {425, 0, -10, 500, 500},
              {425, 0, -10, 250, 250}}}},
    {"us", {{{350, 440, -13, 1000, 0},
             {440, 480, -19, 2000, 4000},
             {480, 620, -24, 500, 500},
             {480, 620, -24, 250, 250}}}},
}};

template <typename Items, typename Name>
std::string choices(const Items& items, Name name) {
    std::string out;
    for (const auto& item : items) out += (out.empty() ? "" : ", ") + std::string(name(item));
    return out;
}

}  // namespace

ToneSpec tone_spec(std::string_view plan, std::string_view tone) {
    const auto name_of = [](std::string_view n) { return n; };
    for (const auto& p : kPlans) {
        if (p.name != plan) continue;
        for (std::size_t i = 0; i < kToneNames.size(); ++i) {
            if (kToneNames[i] == tone) return p.tones[i];
        }
        throw CodecError("unknown tone '" + std::string(tone) + "': known tones are " +
                         choices(kToneNames, name_of));
    }
    throw CodecError("unknown tone plan '" + std::string(plan) + "': known plans are " +
                     choices(kPlans, [](const Plan& p) { return p.name; }));
}

std::vector<std::string> tone_plans() {
    std::vector<std::string> names;
    for (const auto& p : kPlans) names.emplace_back(p.name);
    return names;
}

std::vector<std::string> tone_names() { return {kToneNames.begin(), kToneNames.end()}; }

// A continuous tone is one "on" segment repeated without pause.
ToneGenerator::ToneGenerator(const ToneSpec& spec)
    : descriptor_(spandsp_owned<tone_gen_descriptor_t, tone_gen_descriptor_free>(
          tone_gen_descriptor_init(nullptr, spec.frequency1, spec.level_dbm0, spec.frequency2,
                                   spec.level_dbm0, spec.on_ms, spec.off_ms, 0, 0, 1))),
      state_(spandsp_owned<tone_gen_state_t, tone_gen_free>(
          tone_gen_init(nullptr, descriptor_.get()))) {}

Pcm ToneGenerator::generate(std::size_t samples) {
    Pcm pcm(samples);
    tone_gen(state_.get(), pcm.data(), static_cast<int>(samples));
    return pcm;
}

}  // namespace callbox::codec
