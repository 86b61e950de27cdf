// PCMA and PCMU behind the codec interface, over the G.711 tables.
#include "codec/codec.h"
#include "codec/g711.h"
#include "codec/plc.h"

namespace callbox::codec {

namespace {

CodecInfo g711_info(bool alaw) { return codec_info(alaw ? "PCMA" : "PCMU"); }

using BlockEncode = void (*)(const std::int16_t*, std::size_t, std::uint8_t*) noexcept;
using BlockDecode = void (*)(const std::uint8_t*, std::size_t, std::int16_t*) noexcept;

class G711Encoder final : public Encoder {
public:
    explicit G711Encoder(bool alaw)
        : Encoder(g711_info(alaw)),
          encode_(alaw ? static_cast<BlockEncode>(g711::alaw_encode)
                       : static_cast<BlockEncode>(g711::ulaw_encode)) {}

protected:
    Payload encode_frame(std::span<const std::int16_t> frame) override {
        Payload out(frame.size());
        encode_(frame.data(), frame.size(), out.data());
        return out;
    }

private:
    BlockEncode encode_;
};

class G711Decoder final : public Decoder {
public:
    explicit G711Decoder(bool alaw)
        : Decoder(g711_info(alaw)),
          decode_(alaw ? static_cast<BlockDecode>(g711::alaw_decode)
                       : static_cast<BlockDecode>(g711::ulaw_decode)) {}

    Pcm decode(std::span<const std::uint8_t> payload) override {
        Pcm pcm(payload.size());
        decode_(payload.data(), payload.size(), pcm.data());
        plc_.observe(pcm);
        return pcm;
    }

    Pcm conceal() override { return plc_.fill(info().frame_samples()); }

private:
    BlockDecode decode_;
    PitchConcealer plc_{info().sample_rate};
};

}  // namespace

std::unique_ptr<Encoder> make_g711_encoder(bool alaw) {
    return std::make_unique<G711Encoder>(alaw);
}

std::unique_ptr<Decoder> make_g711_decoder(bool alaw) {
    return std::make_unique<G711Decoder>(alaw);
}

}  // namespace callbox::codec
