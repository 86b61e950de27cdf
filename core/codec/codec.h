// The codec interface the media engine uses: one encoder and one decoder per
// direction of a leg, made by a factory from the SDP payload name and fmtp.
//
// Every codec works on frames (20 ms unless the factory is given the ptime)
// of 16-bit linear PCM at its own sample rate (8 kHz for G.711 and G.729,
// 16 kHz for G.722, 48 kHz for Opus); the engine resamples to its mixing rate
// with codec/resample.h. Decoders accept a payload of any whole number of
// codec frames, since a peer may send another ptime than ours; their
// concealment produces one frame.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace callbox::codec {

using Pcm = std::vector<std::int16_t>;
/// Four floats as one GCC/Clang vector the size of an SSE register (NEON on
/// ARM): baseline x86-64 keeps it in one register, without -march.
using Float4 = float __attribute__((vector_size(4 * sizeof(float))));
using Payload = std::vector<std::uint8_t>;
using FmtpParams = std::map<std::string, std::string>;

/// Bad input from the caller (unknown codec, bad fmtp, wrong frame size,
/// corrupt payload): the message names what is wrong.
class CodecError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

/// What the engine and SDP need to know about a codec.
struct CodecInfo {
    std::string name;            // SDP encoding name, as in a=rtpmap (e.g. "PCMA")
    int rtp_clock_rate;          // RTP timestamp units per second (RFC 3551, RFC 7587)
    int sample_rate;             // PCM rate of encode() input and decode() output
    int frame_ms;                // duration of one frame: encode()'s input, conceal()'s output

    /// Samples in one frame at the codec's sample rate.
    std::size_t frame_samples() const {
        return static_cast<std::size_t>(sample_rate / 1000 * frame_ms);
    }
    /// RTP timestamp increment of one frame.
    std::uint32_t frame_timestamp_increment() const {
        return static_cast<std::uint32_t>(rtp_clock_rate / 1000 * frame_ms);
    }
};

class Encoder;
class Decoder;

/// Factory. Names are case-insensitive; unknown names, invalid fmtp values
/// and frame durations the codec cannot packetise raise CodecError.
/// ``frame_ms`` is the packet duration (SDP ptime): 10 to 60 in steps of 10
/// ms, for Opus 10, 20, 40 or 60.
std::unique_ptr<Encoder> make_encoder(std::string_view name, const FmtpParams& fmtp = {},
                                      int frame_ms = 20);
std::unique_ptr<Decoder> make_decoder(std::string_view name, const FmtpParams& fmtp = {},
                                      int frame_ms = 20);

class Encoder {
public:
    virtual ~Encoder() = default;
    const CodecInfo& info() const { return info_; }
    /// Encodes exactly one frame (info().frame_samples() samples).
    Payload encode(std::span<const std::int16_t> frame);
    /// The rate the audio was sampled at before it was converted to
    /// info().sample_rate: nothing above half of it is in the signal, so a
    /// codec that can (Opus) stops spending bits and CPU on those bands.
    virtual void set_source_rate(int sample_rate) { static_cast<void>(sample_rate); }

protected:
    explicit Encoder(CodecInfo info) : info_(std::move(info)) {}
    virtual Payload encode_frame(std::span<const std::int16_t> frame) = 0;

private:
    CodecInfo info_;
};

class Decoder {
public:
    virtual ~Decoder() = default;
    const CodecInfo& info() const { return info_; }
    /// Decodes one RTP payload to PCM at info().sample_rate.
    virtual Pcm decode(std::span<const std::uint8_t> payload) = 0;
    /// Like decode(), appending to ``pcm``: a codec that can (G.711) decodes
    /// straight into the caller's buffer, with no vector of its own per frame.
    /// ``pcm`` is unchanged when it throws.
    virtual void decode_append(std::span<const std::uint8_t> payload, Pcm& pcm) {
        const Pcm decoded = decode(payload);
        pcm.insert(pcm.end(), decoded.begin(), decoded.end());
    }
    /// One frame standing in for a lost packet: the codec's own concealment
    /// where it has one, else G.711 Appendix I style pitch repetition.
    virtual Pcm conceal() = 0;
    /// Like conceal(), when the packet after the lost one is at hand: codecs
    /// with in-band forward error correction (Opus) rebuild the lost frame
    /// from it. The next packet must still be passed to decode() afterwards.
    virtual Pcm conceal_with_next(std::span<const std::uint8_t> next) {
        static_cast<void>(next);
        return conceal();
    }

protected:
    explicit Decoder(CodecInfo info) : info_(std::move(info)) {}

private:
    CodecInfo info_;
};

/// Parses an fmtp parameter string ("useinbandfec=1; maxplaybackrate=16000").
/// Names are case-insensitive (RFC 4566) and stored lower case.
FmtpParams parse_fmtp(std::string_view fmtp);

/// An integer fmtp parameter in [low, high], or ``fallback`` when absent;
/// CodecError naming the codec and parameter when it is not such a number.
int fmtp_int(const FmtpParams& fmtp, std::string_view codec, const std::string& name,
             int fallback, int low, int high);

/// The codec's description, or CodecError if the name is unknown.
CodecInfo codec_info(std::string_view name);

/// Payload names the factory knows, in a stable order.
std::vector<std::string> codec_names();

// Per-codec constructors used by the factory (codec/<name>.cpp), given the
// codec's description with the frame duration already checked.
std::unique_ptr<Encoder> make_pcmu_encoder(const CodecInfo& info, const FmtpParams& fmtp);
std::unique_ptr<Decoder> make_pcmu_decoder(const CodecInfo& info, const FmtpParams& fmtp);
std::unique_ptr<Encoder> make_pcma_encoder(const CodecInfo& info, const FmtpParams& fmtp);
std::unique_ptr<Decoder> make_pcma_decoder(const CodecInfo& info, const FmtpParams& fmtp);
std::unique_ptr<Encoder> make_g722_encoder(const CodecInfo& info, const FmtpParams& fmtp);
std::unique_ptr<Decoder> make_g722_decoder(const CodecInfo& info, const FmtpParams& fmtp);
std::unique_ptr<Encoder> make_g729_encoder(const CodecInfo& info, const FmtpParams& fmtp);
std::unique_ptr<Decoder> make_g729_decoder(const CodecInfo& info, const FmtpParams& fmtp);
std::unique_ptr<Encoder> make_opus_encoder(const CodecInfo& info, const FmtpParams& fmtp);
std::unique_ptr<Decoder> make_opus_decoder(const CodecInfo& info, const FmtpParams& fmtp);

}  // namespace callbox::codec
