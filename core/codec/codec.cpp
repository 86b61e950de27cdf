#include "codec/codec.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

namespace callbox::codec {

namespace {

std::string lower(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

std::string_view trim(std::string_view text) {
    const auto first = text.find_first_not_of(" \t");
    if (first == std::string_view::npos) return {};
    const auto last = text.find_last_not_of(" \t");
    return text.substr(first, last - first + 1);
}

template <typename Side>
using Maker = std::unique_ptr<Side> (*)(const CodecInfo&, const FmtpParams&);

struct Codec {
    CodecInfo info;
    Maker<Encoder> encoder;
    Maker<Decoder> decoder;
};

// RTP clock rates from RFC 3551 (G.722 keeps 8000 for historical reasons
// though it samples at 16 kHz) and RFC 7587 (Opus always 48000).
const std::array<Codec, 5> kCodecs{{
    {{"PCMU", 8000, 8000, 20}, make_pcmu_encoder, make_pcmu_decoder},
    {{"PCMA", 8000, 8000, 20}, make_pcma_encoder, make_pcma_decoder},
    {{"G722", 8000, 16000, 20}, make_g722_encoder, make_g722_decoder},
    {{"G729", 8000, 8000, 20}, make_g729_encoder, make_g729_decoder},
    {{"opus", 48000, 48000, 20}, make_opus_encoder, make_opus_decoder},
}};

const Codec& find_codec(std::string_view name) {
    const std::string wanted = lower(name);
    for (const auto& codec : kCodecs) {
        if (lower(codec.info.name) == wanted) return codec;
    }
    std::string known;
    for (const auto& codec : kCodecs) known += (known.empty() ? "" : ", ") + codec.info.name;
    throw CodecError("unknown codec '" + std::string(name) + "': known codecs are " + known);
}

// RFC 7587: Opus packets of 2.5 to 120 ms; 10-60 ms are the useful ones for
// calls (and 2.5/5 ms frames lose too much to header overhead).
CodecInfo with_frame_ms(CodecInfo info, int frame_ms) {
    const bool opus = info.name == "opus";
    const bool ok = opus ? (frame_ms == 10 || frame_ms == 20 || frame_ms == 40 || frame_ms == 60)
                         : (frame_ms >= 10 && frame_ms <= 60 && frame_ms % 10 == 0);
    if (!ok) {
        throw CodecError(info.name + " frames must be " +
                         (opus ? "10, 20, 40 or 60" : "10 to 60 in steps of 10") +
                         " ms: got " + std::to_string(frame_ms));
    }
    info.frame_ms = frame_ms;
    return info;
}

}  // namespace

Payload Encoder::encode(std::span<const std::int16_t> frame) {
    if (frame.size() != info_.frame_samples()) {
        throw CodecError(info_.name + " encodes frames of " +
                         std::to_string(info_.frame_samples()) + " samples (" +
                         std::to_string(info_.frame_ms) + " ms at " +
                         std::to_string(info_.sample_rate) + " Hz): got " +
                         std::to_string(frame.size()));
    }
    return encode_frame(frame);
}

FmtpParams parse_fmtp(std::string_view fmtp) {
    FmtpParams params;
    while (!fmtp.empty()) {
        const auto end = fmtp.find(';');
        const std::string_view item = trim(fmtp.substr(0, end));
        fmtp = end == std::string_view::npos ? std::string_view{} : fmtp.substr(end + 1);
        if (item.empty()) continue;
        const auto eq = item.find('=');
        if (eq == std::string_view::npos || trim(item.substr(0, eq)).empty()) {
            throw CodecError("bad fmtp parameter '" + std::string(item) +
                             "': expected name=value");
        }
        params[lower(trim(item.substr(0, eq)))] = std::string(trim(item.substr(eq + 1)));
    }
    return params;
}

int fmtp_int(const FmtpParams& fmtp, std::string_view codec, const std::string& name,
             int fallback, int low, int high) {
    const auto it = fmtp.find(name);
    if (it == fmtp.end()) return fallback;
    const std::string& text = it->second;
    int value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size() || value < low || value > high) {
        throw CodecError("bad fmtp for " + std::string(codec) + ": " + name + "=" + text +
                         " (expected an integer from " + std::to_string(low) + " to " +
                         std::to_string(high) + ")");
    }
    return value;
}

CodecInfo codec_info(std::string_view name) { return find_codec(name).info; }

std::vector<std::string> codec_names() {
    std::vector<std::string> names;
    for (const auto& codec : kCodecs) names.push_back(codec.info.name);
    return names;
}

std::unique_ptr<Encoder> make_encoder(std::string_view name, const FmtpParams& fmtp,
                                      int frame_ms) {
    const Codec& codec = find_codec(name);
    return codec.encoder(with_frame_ms(codec.info, frame_ms), fmtp);
}

std::unique_ptr<Decoder> make_decoder(std::string_view name, const FmtpParams& fmtp,
                                      int frame_ms) {
    const Codec& codec = find_codec(name);
    return codec.decoder(with_frame_ms(codec.info, frame_ms), fmtp);
}

}  // namespace callbox::codec
