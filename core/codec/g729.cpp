// G.729 Annex A with bcg729: 10 ms frames of 10 octets, two per 20 ms packet.
// Annex B (VAD, comfort noise, 2-octet SID frames) only when the fmtp says
// annexb=yes: RFC 4856 makes it the default when absent, but many gateways
// mishandle SID frames, so we offer and assume it off.
// bcg729's headers do not declare C linkage themselves.
extern "C" {
#include <bcg729/decoder.h>
#include <bcg729/encoder.h>
}

#include <memory>

#include "codec/codec.h"

namespace callbox::codec {

namespace {

constexpr std::size_t kFrameSamples = 80;  // 10 ms at 8 kHz
constexpr std::size_t kFrameOctets = 10;
constexpr std::size_t kSidOctets = 2;

bool annexb_enabled(const FmtpParams& fmtp) {
    const auto it = fmtp.find("annexb");
    if (it == fmtp.end() || it->second == "no") return false;
    if (it->second == "yes") return true;
    throw CodecError("bad fmtp for G729: annexb=" + it->second + " (expected yes or no)");
}

struct EncoderClose {
    void operator()(bcg729EncoderChannelContextStruct* c) const noexcept {
        closeBcg729EncoderChannel(c);
    }
};
struct DecoderClose {
    void operator()(bcg729DecoderChannelContextStruct* c) const noexcept {
        closeBcg729DecoderChannel(c);
    }
};

class G729Encoder final : public Encoder {
public:
    G729Encoder(const CodecInfo& info, bool vad)
        : Encoder(info), state_(initBcg729EncoderChannel(vad ? 1 : 0)) {
        if (!state_) throw std::bad_alloc();
    }

protected:
    // With Annex B a frame may encode to nothing (no transmission) or to a
    // SID; RFC 3551 allows a SID only as the last frame of a packet, so
    // encoding stops at the first one. An empty payload: send nothing.
    Payload encode_frame(std::span<const std::int16_t> frame) override {
        Payload out(frame.size() / kFrameSamples * kFrameOctets);
        std::size_t used = 0;
        for (std::size_t i = 0; i < frame.size(); i += kFrameSamples) {
            std::uint8_t length = 0;
            bcg729Encoder(state_.get(), frame.data() + i, out.data() + used, &length);
            used += length;
            if (length == kSidOctets) break;
        }
        out.resize(used);
        return out;
    }

private:
    std::unique_ptr<bcg729EncoderChannelContextStruct, EncoderClose> state_;
};

class G729Decoder final : public Decoder {
public:
    explicit G729Decoder(const CodecInfo& info)
        : Decoder(info), state_(initBcg729DecoderChannel()) {
        if (!state_) throw std::bad_alloc();
    }

    Pcm decode(std::span<const std::uint8_t> payload) override {
        const std::size_t frames = payload.size() / kFrameOctets;
        const std::size_t rest = payload.size() % kFrameOctets;
        if (payload.empty() || (rest != 0 && rest != kSidOctets)) {
            throw CodecError("G729 payload must be 10-octet frames optionally followed by a "
                             "2-octet SID: got " + std::to_string(payload.size()) + " octets");
        }
        Pcm pcm((frames + (rest != 0 ? 1 : 0)) * kFrameSamples);
        for (std::size_t i = 0; i < frames; ++i) {
            bcg729Decoder(state_.get(), payload.data() + i * kFrameOctets,
                          static_cast<std::uint8_t>(kFrameOctets), 0, 0, 0,
                          pcm.data() + i * kFrameSamples);
        }
        if (rest != 0) {
            bcg729Decoder(state_.get(), payload.data() + frames * kFrameOctets,
                          static_cast<std::uint8_t>(kSidOctets), 0, 1, 0,
                          pcm.data() + frames * kFrameSamples);
        }
        return pcm;
    }

    // G.729's own concealment: the decoder extrapolates from its last
    // parameters when told the frame is erased, or, after a SID, goes on
    // with comfort noise (G.729 Annex B, B.27).
    Pcm conceal() override {
        Pcm pcm(info().frame_samples());
        for (std::size_t i = 0; i < pcm.size(); i += kFrameSamples) {
            bcg729Decoder(state_.get(), nullptr, 0, 1, 0, 0, pcm.data() + i);
        }
        return pcm;
    }

private:
    std::unique_ptr<bcg729DecoderChannelContextStruct, DecoderClose> state_;
};

}  // namespace

std::unique_ptr<Encoder> make_g729_encoder(const CodecInfo& info, const FmtpParams& fmtp) {
    return std::make_unique<G729Encoder>(info, annexb_enabled(fmtp));
}

std::unique_ptr<Decoder> make_g729_decoder(const CodecInfo& info, const FmtpParams&) {
    return std::make_unique<G729Decoder>(info);
}

}  // namespace callbox::codec
