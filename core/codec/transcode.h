// Transcoding between any two codecs: decode, resample, re-frame, encode.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "codec/codec.h"
#include "codec/resample.h"

namespace callbox::codec {

class Transcoder {
public:
    Transcoder(std::unique_ptr<Decoder> decoder, std::unique_ptr<Encoder> encoder);

    const Decoder& decoder() const { return *decoder_; }
    const Encoder& encoder() const { return *encoder_; }

    /// One incoming payload to the outgoing payloads it completes: none, one
    /// or more, since the two sides' packet durations need not match.
    std::vector<Payload> transcode(std::span<const std::uint8_t> payload);
    /// A lost incoming packet: the decoder conceals, the result is encoded.
    std::vector<Payload> transcode_lost();

private:
    std::vector<Payload> push(const Pcm& pcm);

    std::unique_ptr<Decoder> decoder_;
    std::unique_ptr<Encoder> encoder_;
    Resampler resampler_;
    Pcm pending_;
};

}  // namespace callbox::codec
