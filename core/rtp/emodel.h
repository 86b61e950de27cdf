// Call quality estimate: the ITU-T G.107 E-model in its common simplified form
// (default R0 - Is = 93.2, delay impairment after Cole and Rosenbluth, codec
// impairment Ie and packet-loss robustness Bpl from G.113 Appendix I).
#pragma once

#include <string_view>

namespace callbox::rtp {

struct CodecImpairment {
    double ie;   // equipment impairment factor
    double bpl;  // packet-loss robustness factor
};

// Known codecs by their SDP encoding name (case-insensitive); nullptr if unknown.
const CodecImpairment* codec_impairment(std::string_view codec);

struct Quality {
    double r_factor;
    double mos;
};

// `one_way_delay_ms` is mouth-to-ear; `loss_percent` random packet loss in %.
Quality e_model(double one_way_delay_ms, double loss_percent, const CodecImpairment& codec);

}  // namespace callbox::rtp
