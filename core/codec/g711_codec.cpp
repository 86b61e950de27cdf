// PCMA and PCMU behind the codec interface, over the G.711 tables.
#include "codec/codec.h"
#include "codec/g711.h"
#include "codec/plc.h"

namespace callbox::codec {

namespace {

class G711Encoder final : public Encoder {
public:
    G711Encoder(const CodecInfo& info, bool alaw)
        : Encoder(info), encode_(g711::block_encoder(alaw)) {}

protected:
    Payload encode_frame(std::span<const std::int16_t> frame) override {
        Payload out(frame.size());
        encode_(frame.data(), frame.size(), out.data());
        return out;
    }

private:
    g711::BlockEncode encode_;
};

class G711Decoder final : public Decoder {
public:
    G711Decoder(const CodecInfo& info, bool alaw)
        : Decoder(info), decode_(g711::block_decoder(alaw)) {}

    Pcm decode(std::span<const std::uint8_t> payload) override {
        Pcm pcm;
        decode_append(payload, pcm);
        return pcm;
    }

    void decode_append(std::span<const std::uint8_t> payload, Pcm& pcm) override {
        const std::size_t start = pcm.size();
        pcm.resize(start + payload.size());
        const std::span<std::int16_t> decoded = std::span(pcm).subspan(start);
        decode_(payload.data(), payload.size(), decoded.data());
        plc_.observe(decoded);
    }

    Pcm conceal() override { return plc_.fill(info().frame_samples()); }

private:
    g711::BlockDecode decode_;
    PitchConcealer plc_{info().sample_rate};
};

}  // namespace

std::unique_ptr<Encoder> make_pcmu_encoder(const CodecInfo& info, const FmtpParams&) {
    return std::make_unique<G711Encoder>(info, false);
}
std::unique_ptr<Decoder> make_pcmu_decoder(const CodecInfo& info, const FmtpParams&) {
    return std::make_unique<G711Decoder>(info, false);
}
std::unique_ptr<Encoder> make_pcma_encoder(const CodecInfo& info, const FmtpParams&) {
    return std::make_unique<G711Encoder>(info, true);
}
std::unique_ptr<Decoder> make_pcma_decoder(const CodecInfo& info, const FmtpParams&) {
    return std::make_unique<G711Decoder>(info, true);
}

}  // namespace callbox::codec
