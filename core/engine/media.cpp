#include "engine/media.h"

#include <opus/opus.h>

#include <algorithm>
#include <cctype>

#include "mixer/mixer.h"

namespace callbox::engine {

namespace {

// A digit whose packets stop without an end packet ends after this long.
constexpr std::int64_t kDigitSilenceMs = 1000;
// Decoder calls per tick at most: each adds at least one codec frame.
constexpr int kMaxDecodesPerTick = 4;

// A decoded frame below the mixer's talker threshold is quiet: time-stretching it is not heard.
bool quiet(std::span<const std::int16_t> pcm) {
    if (pcm.empty()) return true;
    std::int64_t energy = 0;
    for (const std::int16_t s : pcm) energy += static_cast<std::int64_t>(s) * s;
    return energy / static_cast<std::int64_t>(pcm.size()) < mixer::kTalkThreshold;
}

}  // namespace

std::string lower_case(std::string name) {
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    return name;
}

std::span<const std::int16_t> RateConverter::convert(std::span<const std::int16_t> pcm, int in_rate) {
    if (in_rate == out_rate_) return pcm;
    if (!resampler_ || resampler_->in_rate() != in_rate) resampler_.emplace(in_rate, out_rate_);
    out_ = resampler_->process(pcm);
    return out_;
}

ReceivePath::Framing ReceivePath::framing_of(const std::string& codec) {
    const std::string name = lower_case(codec);
    if (name == "g729") return Framing::g729;
    if (name == "opus") return Framing::opus;
    return Framing::octet_per_sample;
}

ReceivePath::ReceivePath(const std::string& codec, const codec::FmtpParams& fmtp, std::uint32_t clock_rate)
    : framing_(framing_of(codec)), decoder_(codec::make_decoder(codec, fmtp)), buffer_(jitter::Settings{clock_rate}) {}

std::uint32_t ReceivePath::duration_of(std::span<const std::uint8_t> payload) const {
    const auto octets = static_cast<std::uint32_t>(payload.size());
    if (framing_ == Framing::g729) {
        // 10 octets per 10 ms frame; a 2-octet annex B SID stands for one frame.
        return 80 * std::max<std::uint32_t>(1, (octets + 9) / 10);
    }
    if (framing_ == Framing::opus) {
        const int samples = opus_packet_get_nb_samples(payload.data(), static_cast<opus_int32>(payload.size()), 48000);
        return samples > 0 ? static_cast<std::uint32_t>(samples) : decoder_->info().frame_timestamp_increment();
    }
    // G.711 and G.722 (RFC 3551's 8000 clock): one timestamp unit per octet.
    return std::max<std::uint32_t>(octets, 1);
}

void ReceivePath::put(std::span<const std::uint8_t> payload, std::uint32_t timestamp, std::uint16_t sequence,
                      std::uint32_t source, std::int64_t arrival_ms) {
    if (payload.empty()) return;
    buffer_.put(payload, timestamp, sequence, duration_of(payload), arrival_ms, source);
}

void ReceivePath::append(const codec::Pcm& pcm) { pending_.insert(pending_.end(), pcm.begin(), pcm.end()); }

void ReceivePath::decode(std::span<const std::uint8_t> payload) {
    try {
        decoder_->decode_append(payload, pending_);
    } catch (const codec::CodecError&) {
        // A corrupt payload is as good as lost.
        append(decoder_->conceal());
    }
}

void ReceivePath::conceal(std::span<const std::uint8_t> next) {
    if (!next.empty()) {
        try {
            append(decoder_->conceal_with_next(next));
            return;
        } catch (const codec::CodecError&) {
            // A corrupt next packet carries no usable FEC either.
        }
    }
    append(decoder_->conceal());
}

std::span<const std::int16_t> ReceivePath::pull(std::int64_t now_ms) {
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(played_));
    played_ = 0;
    const std::size_t wanted = frame_samples(sample_rate());
    for (int round = 0; round < kMaxDecodesPerTick && pending_.size() < wanted; ++round) {
        buffer_.get(now_ms, low_energy_, out_);
        switch (out_.decision) {
            case jitter::Decision::buffering:
                if (pending_.empty()) return {};
                pending_.resize(wanted, 0);  // the end of what was played, then silence
                break;
            case jitter::Decision::normal:
            case jitter::Decision::merge:
            case jitter::Decision::accelerate:
                decode(out_.payload);
                break;
            case jitter::Decision::expand:
                conceal(buffer_.next_held());
                break;
            case jitter::Decision::preemptive_expand:
                // Quiet audio, stretched by one frame: the codec's concealment continues it.
                conceal({});
                break;
        }
    }
    pending_.resize(std::max(pending_.size(), wanted), 0);
    // The frame is played from where it was decoded, without a copy.
    played_ = wanted;
    const std::span<const std::int16_t> frame(pending_.data(), wanted);
    low_energy_ = quiet(frame);
    return frame;
}

SendPath::SendPath(const std::string& codec, const codec::FmtpParams& fmtp)
    : encoder_(codec::make_encoder(codec, fmtp)), converter_(encoder_->info().sample_rate) {}

const codec::Payload& SendPath::encode(std::span<const std::int16_t> pcm, int sample_rate) {
    if (sample_rate != source_rate_) {
        encoder_->set_source_rate(sample_rate);
        source_rate_ = sample_rate;
    }
    payload_ = encoder_->encode(converter_.convert(pcm, sample_rate));
    return payload_;
}

Digit TelephoneEventTracker::finish(const Current& current) const {
    return {current.digit, static_cast<int>(static_cast<std::uint64_t>(current.duration) * 1000 / clock_rate_)};
}

TelephoneEventTracker::Result TelephoneEventTracker::receive(std::span<const std::uint8_t> payload,
                                                             std::uint32_t timestamp, std::uint64_t stream,
                                                             std::int64_t now_ms) {
    Result result;
    if (stream != stream_) {
        // A new sender numbers its events afresh.
        receiver_ = {};
        stream_ = stream;
    }
    codec::TelephoneEvent event;
    try {
        event = codec::TelephoneEvent::decode(payload);
    } catch (const codec::CodecError&) {
        return result;
    }
    if (receiver_.receive(timestamp, payload)) {
        if (current_) result.ended = finish(*current_);  // its end packets were lost
        current_.reset();
        // Events beyond the 16 DTMF digits (flash, tones) are not digits.
        if (event.event > 15) return result;
        current_ = Current{codec::dtmf_digit(event.event), timestamp, event.duration, now_ms};
        result.started = current_->digit;
    }
    if (!current_ || current_->timestamp != timestamp) return result;
    current_->duration = std::max<std::uint32_t>(current_->duration, event.duration);
    current_->last_heard_ms = now_ms;
    if (event.end) {
        result.ended = finish(*current_);
        current_.reset();
    }
    return result;
}

std::optional<Digit> TelephoneEventTracker::expire(std::int64_t now_ms) {
    if (!current_ || now_ms - current_->last_heard_ms < kDigitSilenceMs) return std::nullopt;
    const Digit digit = finish(*current_);
    current_.reset();
    return digit;
}

}  // namespace callbox::engine
