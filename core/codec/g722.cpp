// G.722 at 64 kbit/s with spandsp: 16 kHz audio, 8 kHz RTP clock (RFC 3551).
#include <spandsp.h>

#include "codec/codec.h"
#include "codec/plc.h"
#include "codec/spandsp_ptr.h"

namespace callbox::codec {

namespace {

constexpr int kBitRate = 64000;

class G722Encoder final : public Encoder {
public:
    explicit G722Encoder(const CodecInfo& info)
        : Encoder(info),
          state_(spandsp_owned<g722_encode_state_t, g722_encode_free>(
              g722_encode_init(nullptr, kBitRate, 0))) {}

protected:
    Payload encode_frame(std::span<const std::int16_t> frame) override {
        // Two 16 kHz samples make one octet at 64 kbit/s.
        Payload out(frame.size() / 2);
        const int n = g722_encode(state_.get(), out.data(), frame.data(),
                                  static_cast<int>(frame.size()));
        out.resize(static_cast<std::size_t>(n));
        return out;
    }

private:
    SpandspPtr<g722_encode_state_t, g722_encode_free> state_;
};

class G722Decoder final : public Decoder {
public:
    explicit G722Decoder(const CodecInfo& info)
        : Decoder(info),
          state_(spandsp_owned<g722_decode_state_t, g722_decode_free>(
              g722_decode_init(nullptr, kBitRate, 0))) {}

    Pcm decode(std::span<const std::uint8_t> payload) override {
        Pcm pcm(payload.size() * 2);
        const int n = g722_decode(state_.get(), pcm.data(), payload.data(),
                                  static_cast<int>(payload.size()));
        pcm.resize(static_cast<std::size_t>(n));
        plc_.observe(pcm);
        return pcm;
    }

    // spandsp's G.722 has no concealment of its own; pitch repetition works
    // on its 16 kHz output as well as on G.711's 8 kHz.
    Pcm conceal() override { return plc_.fill(info().frame_samples()); }

private:
    SpandspPtr<g722_decode_state_t, g722_decode_free> state_;
    PitchConcealer plc_{info().sample_rate};
};

}  // namespace

std::unique_ptr<Encoder> make_g722_encoder(const CodecInfo& info, const FmtpParams&) {
    return std::make_unique<G722Encoder>(info);
}
std::unique_ptr<Decoder> make_g722_decoder(const CodecInfo& info, const FmtpParams&) {
    return std::make_unique<G722Decoder>(info);
}

}  // namespace callbox::codec
