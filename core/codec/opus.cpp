// Opus with libopus, mono, 48 kHz RTP clock and RFC 7587 fmtp parameters.
// The fmtp we are given is the remote side's: it says what the peer wants
// to receive, so it configures our encoder.
#include <opus/opus.h>

#include <algorithm>
#include <memory>

#include "codec/codec.h"

namespace callbox::codec {

namespace {

constexpr int kRate = 48000;
constexpr int kMaxFrameSamples = kRate * 120 / 1000;  // the longest Opus packet
constexpr std::size_t kMaxPacket = 1275;              // RFC 6716, one frame
constexpr int kFecComplexity = 5;                     // see the encoder's constructor

void check(int status, const char* what) {
    if (status < 0) throw CodecError(std::string(what) + ": " + opus_strerror(status));
}

bool fmtp_flag(const FmtpParams& fmtp, const std::string& name) {
    return fmtp_int(fmtp, "opus", name, 0, 0, 1) == 1;
}

// The widest band audio sampled (or played back, RFC 7587 6.1's
// maxplaybackrate) at `rate` can hold.
int bandwidth_for(int rate) {
    if (rate <= 8000) return OPUS_BANDWIDTH_NARROWBAND;
    if (rate <= 12000) return OPUS_BANDWIDTH_MEDIUMBAND;
    if (rate <= 16000) return OPUS_BANDWIDTH_WIDEBAND;
    if (rate <= 24000) return OPUS_BANDWIDTH_SUPERWIDEBAND;
    return OPUS_BANDWIDTH_FULLBAND;
}

struct EncoderDestroy {
    void operator()(OpusEncoder* e) const noexcept { opus_encoder_destroy(e); }
};
struct DecoderDestroy {
    void operator()(OpusDecoder* d) const noexcept { opus_decoder_destroy(d); }
};

class OpusEncoderImpl final : public Encoder {
public:
    OpusEncoderImpl(const CodecInfo& info, const FmtpParams& fmtp) : Encoder(info) {
        // Validated before any libopus call so a bad value is reported as such.
        const int playback = fmtp_int(fmtp, "opus", "maxplaybackrate", kRate, 8000, 48000);
        const int bitrate = fmtp_int(fmtp, "opus", "maxaveragebitrate", 0, 6000, 510000);
        // stereo=1 only says the peer could take stereo; a call is mono.
        fmtp_flag(fmtp, "stereo");
        const bool fec = fmtp_flag(fmtp, "useinbandfec");
        const bool dtx = fmtp_flag(fmtp, "usedtx");
        const bool cbr = fmtp_flag(fmtp, "cbr");
        max_bandwidth_ = bandwidth_for(playback);
        int status = 0;
        state_.reset(opus_encoder_create(kRate, 1, OPUS_APPLICATION_VOIP, &status));
        check(status, "opus_encoder_create");
        auto* e = state_.get();
        check(opus_encoder_ctl(e, OPUS_SET_MAX_BANDWIDTH(max_bandwidth_)), "bandwidth");
        if (bitrate != 0) check(opus_encoder_ctl(e, OPUS_SET_BITRATE(bitrate)), "bitrate");
        check(opus_encoder_ctl(e, OPUS_SET_INBAND_FEC(fec ? 1 : 0)), "inband FEC");
        // FEC is only spent when the encoder expects loss; 10% is a typical
        // planning figure for a congested access network.
        if (fec) check(opus_encoder_ctl(e, OPUS_SET_PACKET_LOSS_PERC(10)), "loss");
        // In-band FEC exists only in SILK, so a peer that asks for it (every
        // WebRTC browser does) moves the encoder from CELT to SILK/hybrid with
        // a redundant copy of each frame: at libopus's default complexity 10
        // that is about 4.5x the CPU of a CELT frame. Complexity 5 halves it
        // (WebRTC's own setting on mobile); benchmarks/engine_call_cost.py.
        if (fec) check(opus_encoder_ctl(e, OPUS_SET_COMPLEXITY(kFecComplexity)), "complexity");
        check(opus_encoder_ctl(e, OPUS_SET_DTX(dtx ? 1 : 0)), "DTX");
        check(opus_encoder_ctl(e, OPUS_SET_VBR(cbr ? 0 : 1)), "VBR");
    }

    // A G.711 caller's voice upsampled to 48 kHz is still narrowband: coding
    // it as such costs about half the CPU of fullband, and loses nothing.
    void set_source_rate(int sample_rate) override {
        const int bandwidth = std::min(max_bandwidth_, bandwidth_for(sample_rate));
        check(opus_encoder_ctl(state_.get(), OPUS_SET_MAX_BANDWIDTH(bandwidth)), "bandwidth");
    }

protected:
    Payload encode_frame(std::span<const std::int16_t> frame) override {
        Payload out(kMaxPacket);
        const opus_int32 n =
            opus_encode(state_.get(), frame.data(), static_cast<int>(frame.size()), out.data(),
                        static_cast<opus_int32>(out.size()));
        check(n, "opus_encode");
        out.resize(static_cast<std::size_t>(n));
        return out;
    }

private:
    int max_bandwidth_;  // the peer's maxplaybackrate (RFC 7587), an upper bound
    std::unique_ptr<OpusEncoder, EncoderDestroy> state_;
};

class OpusDecoderImpl final : public Decoder {
public:
    explicit OpusDecoderImpl(const CodecInfo& info) : Decoder(info) {
        int status = 0;
        state_.reset(opus_decoder_create(kRate, 1, &status));
        check(status, "opus_decoder_create");
    }

    Pcm decode(std::span<const std::uint8_t> payload) override {
        if (payload.empty()) throw CodecError("empty Opus payload");
        return run(payload, kMaxFrameSamples, false, "corrupt Opus payload");
    }

    // libopus's own concealment extrapolates from the last frames.
    Pcm conceal() override {
        return run({}, static_cast<int>(info().frame_samples()), false, "opus PLC");
    }

    // With in-band FEC the next packet carries a low-rate copy of the lost
    // frame; without it libopus falls back to concealment by itself.
    Pcm conceal_with_next(std::span<const std::uint8_t> next) override {
        if (next.empty()) return conceal();
        return run(next, static_cast<int>(info().frame_samples()), true, "corrupt Opus payload");
    }

private:
    Pcm run(std::span<const std::uint8_t> data, int max_samples, bool fec, const char* what) {
        Pcm pcm(static_cast<std::size_t>(max_samples));
        const int n = opus_decode(state_.get(), data.empty() ? nullptr : data.data(),
                                  static_cast<opus_int32>(data.size()), pcm.data(), max_samples,
                                  fec ? 1 : 0);
        check(n, what);
        pcm.resize(static_cast<std::size_t>(n));
        return pcm;
    }

    std::unique_ptr<OpusDecoder, DecoderDestroy> state_;
};

}  // namespace

std::unique_ptr<Encoder> make_opus_encoder(const CodecInfo& info, const FmtpParams& fmtp) {
    return std::make_unique<OpusEncoderImpl>(info, fmtp);
}

std::unique_ptr<Decoder> make_opus_decoder(const CodecInfo& info, const FmtpParams& fmtp) {
    // RFC 7587's receive-side parameters (sprop-*) only inform the decoder;
    // still refuse malformed ones like the encoder does.
    fmtp_int(fmtp, "opus", "sprop-maxcapturerate", kRate, 8000, 48000);
    fmtp_int(fmtp, "opus", "sprop-stereo", 0, 0, 1);
    return std::make_unique<OpusDecoderImpl>(info);
}

}  // namespace callbox::codec
