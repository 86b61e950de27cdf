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

// RTP clock rates from RFC 3551 (G.722 keeps 8000 for historical reasons
// though it samples at 16 kHz) and RFC 7587 (Opus always 48000).
const std::array<CodecInfo, 5> kCodecs{{
    {"PCMU", 8000, 8000, 20},
    {"PCMA", 8000, 8000, 20},
    {"G722", 8000, 16000, 20},
    {"G729", 8000, 8000, 20},
    {"opus", 48000, 48000, 20},
}};

const CodecInfo& find_codec(std::string_view name) {
    const std::string wanted = lower(name);
    for (const auto& codec : kCodecs) {
        if (lower(codec.name) == wanted) return codec;
    }
    std::string known;
    for (const auto& codec : kCodecs) known += (known.empty() ? "" : ", ") + codec.name;
    throw CodecError("unknown codec '" + std::string(name) + "': known codecs are " + known);
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

CodecInfo codec_info(std::string_view name) { return find_codec(name); }

std::vector<std::string> codec_names() {
    std::vector<std::string> names;
    for (const auto& codec : kCodecs) names.push_back(codec.name);
    return names;
}

std::unique_ptr<Encoder> make_encoder(std::string_view name, const FmtpParams& fmtp) {
    const std::string& canonical = find_codec(name).name;
    if (canonical == "PCMU" || canonical == "PCMA") return make_g711_encoder(canonical == "PCMA");
    if (canonical == "G722") return make_g722_encoder();
    if (canonical == "G729") return make_g729_encoder(fmtp);
    return make_opus_encoder(fmtp);
}

std::unique_ptr<Decoder> make_decoder(std::string_view name, const FmtpParams& fmtp) {
    const std::string& canonical = find_codec(name).name;
    if (canonical == "PCMU" || canonical == "PCMA") return make_g711_decoder(canonical == "PCMA");
    if (canonical == "G722") return make_g722_decoder();
    if (canonical == "G729") return make_g729_decoder();
    return make_opus_decoder(fmtp);
}

}  // namespace callbox::codec
