#include "rtp/emodel.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

namespace callbox::rtp {

namespace {

bool same_name(std::string_view a, std::string_view b) {
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

// G.113 Appendix I values, with packet-loss concealment where the codec has it.
// G.722 and Opus have no narrowband entries; they are scored like G.711 with PLC,
// the best the narrowband scale can express.
constexpr std::array<std::pair<std::string_view, CodecImpairment>, 6> kCodecs{{
    {"PCMU", {0.0, 25.1}},
    {"PCMA", {0.0, 25.1}},
    {"G722", {0.0, 25.1}},
    {"opus", {0.0, 25.1}},
    {"G729", {11.0, 19.0}},
    {"G729A", {11.0, 19.0}},
}};

}  // namespace

const CodecImpairment* codec_impairment(std::string_view codec) {
    for (const auto& [name, impairment] : kCodecs) {
        if (same_name(name, codec)) return &impairment;
    }
    return nullptr;
}

Quality e_model(double one_way_delay_ms, double loss_percent, const CodecImpairment& codec) {
    const double d = std::max(0.0, one_way_delay_ms);
    const double ppl = std::clamp(loss_percent, 0.0, 100.0);
    const double id = 0.024 * d + (d > 177.3 ? 0.11 * (d - 177.3) : 0.0);
    // Random loss (BurstR = 1).
    const double ie_eff = codec.ie + (95.0 - codec.ie) * ppl / (ppl + codec.bpl);
    const double r = 93.2 - id - ie_eff;
    double mos = 1.0;
    if (r >= 100.0) {
        mos = 4.5;
    } else if (r > 0.0) {
        mos = 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6;
    }
    return {r, mos};
}

}  // namespace callbox::rtp
