#include "codec/transcode.h"

namespace callbox::codec {

Transcoder::Transcoder(std::unique_ptr<Decoder> decoder, std::unique_ptr<Encoder> encoder)
    : decoder_(std::move(decoder)),
      encoder_(std::move(encoder)),
      resampler_(decoder_->info().sample_rate, encoder_->info().sample_rate) {}

std::vector<Payload> Transcoder::transcode(std::span<const std::uint8_t> payload) {
    return push(decoder_->decode(payload));
}

std::vector<Payload> Transcoder::transcode_lost() { return push(decoder_->conceal()); }

std::vector<Payload> Transcoder::push(const Pcm& pcm) {
    const Pcm resampled = resampler_.process(pcm);
    pending_.insert(pending_.end(), resampled.begin(), resampled.end());
    std::vector<Payload> out;
    const std::size_t frame = encoder_->info().frame_samples();
    std::size_t used = 0;
    for (; pending_.size() - used >= frame; used += frame) {
        out.push_back(encoder_->encode(std::span(pending_).subspan(used, frame)));
    }
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(used));
    return out;
}

}  // namespace callbox::codec
