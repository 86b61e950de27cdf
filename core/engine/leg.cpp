#include "engine/leg.h"

#include <algorithm>

#include "engine/record_in.h"

namespace callbox::engine {

namespace {

std::int64_t to_ms(Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// Gap after an in-band digit, so two equal digits are heard as two.
constexpr int kInbandPauseMs = 60;
// In-band digits at a level phones and detectors expect (ITU-T Q.23 range).
constexpr int kInbandLevelDbm0 = -10;
constexpr int kDetectorRate = 8000;
constexpr int kMinDigitMs = 40;  // ITU-T Q.24's shortest digit
constexpr int kMaxDigitMs = 1000;

}  // namespace

Leg::Leg(LegId id, CodecSpec codec, AudioOptions audio)
    : id_(id),
      codec_(std::move(codec)),
      audio_(audio),
      local_stream_((id << 32) | 0xFFFFFFFFu),
      audio_stream_((id << 32) | 0xFFFFFFFEu) {
    if (audio_.telephone_event >= 0) digits_in_ = std::make_unique<TelephoneEventTracker>(codec_.clock_rate);
    const std::string name = lower_case(codec_.name);
    if ((name == "pcma" || name == "pcmu") && codec_.clock_rate == 8000) g711_alaw_ = name == "pcma";
}

Leg::~Leg() = default;

bool Leg::same_codec(const CodecSpec& a, const CodecSpec& b) {
    return lower_case(a.name) == lower_case(b.name) && a.clock_rate == b.clock_rate;
}

void Leg::set_bridged(Leg* peer) {
    bridged_ = peer;
    relay_ = peer != nullptr && same_codec(codec_, peer->codec_);
}

void Leg::set_inband_dtmf(bool on) {
    audio_.inband_dtmf = on;
    // The next frame picks the receive path that suits who takes the audio
    // now (receive_path()): a recorded relay no longer needs the decoder's.
    if (!on) {
        detector_.reset();
        detector_rate_.reset();
    }
}

int Leg::received_rate() const { return receive_ ? receive_->sample_rate() : 0; }

bool Leg::wants_audio() const {
    return audio_users_ > 0 || (bridged_ != nullptr && !relay_) || detects_inband();
}

bool Leg::only_recorded() const {
    return g711_alaw_ && recorders_ > 0 && recorders_ == audio_users_ && (bridged_ == nullptr || relay_) &&
           !detects_inband();
}

AudioIn& Leg::receive_path() {
    const bool recorded = only_recorded();
    if (!receive_ || receive_->in_conversation() == recorded) {
        // Who listens changed (a conference joined, a transcoding bridge): the
        // audio starts afresh in the path that suits them.
        if (recorded) {
            receive_ = std::make_unique<RecordedG711In>(*g711_alaw_);
        } else {
            receive_ = std::make_unique<ReceivePath>(codec_.name, codec::parse_fmtp(codec_.fmtp), codec_.clock_rate);
        }
    }
    return *receive_;
}

bool Leg::speaking_locally() const {
    return source_ != nullptr || !digits_out_.empty() || (event_sender_ && event_sender_->busy()) ||
           (tone_digit_ && tone_digit_->busy());
}

void Leg::deliver(const Frame& frame, Clock::time_point now) {
    if (audio_.telephone_event >= 0 && frame.payload_type == audio_.telephone_event) {
        on_telephone_event(frame, now);
        return;
    }
    if (relay_ && !bridged_->speaking_locally()) {
        Frame relayed = frame;
        if (frame.payload_type == codec_.payload_type) relayed.payload_type = bridged_->codec_.payload_type;
        bridged_->send_frame(relayed, now);
    }
    if (frame.payload_type != codec_.payload_type || !wants_audio()) return;
    receive_path().put(frame.payload, frame.timestamp, frame.sequence, static_cast<std::uint32_t>(frame.stream), to_ms(now));
}

void Leg::on_telephone_event(const Frame& frame, Clock::time_point now) {
    const TelephoneEventTracker::Result result =
        digits_in_->receive(frame.payload, frame.timestamp, frame.stream, to_ms(now));
    // A relay forwards the event's packets as they come, under the peer's payload type.
    const bool forward_live = relay_ && bridged_->audio_.telephone_event >= 0;
    if (forward_live && !bridged_->speaking_locally()) {
        Frame relayed = frame;
        relayed.payload_type = static_cast<std::uint8_t>(bridged_->audio_.telephone_event);
        bridged_->send_frame(relayed, now);
    }
    if (result.ended) on_digit_ended(*result.ended, "rfc4733");
    if (result.started) on_digit_started(*result.started);
    // Otherwise the peer gets the digit once its duration is known, within
    // what send_dtmf() accepts (a 16-bit duration at 48 kHz lasts 1.36 s).
    if (result.ended && bridged_ != nullptr && !forward_live) {
        const int duration_ms = std::clamp(result.ended->duration_ms, kMinDigitMs, kMaxDigitMs);
        bridged_->send_dtmf(std::string(1, result.ended->digit), duration_ms);
    }
}

void Leg::on_digit_started(char digit) {
    if (source_ && source_->on_digit(digit)) finish_playback(source_->end());
}

void Leg::on_digit_ended(const Digit& digit, const char* how) {
    Event event{"dtmf", id_, std::string(1, digit.digit), how};
    event.duration_ms = digit.duration_ms;
    host().post_event(std::move(event));
}

void Leg::pull_audio(Clock::time_point now, std::uint64_t frame) {
    if (frame == pulled_frame_) return;
    pulled_frame_ = frame;  // before the work: a pull that throws is not tried again this frame
    received_ = {};
    if (!wants_audio()) {
        receive_.reset();  // a relay, or nobody listening: no buffering, no decoding
        return;
    }
    if (!receive_) return;
    received_ = receive_path().pull(to_ms(now));
    if (!detects_inband() || received_.empty()) return;
    if (!detector_) {
        detector_ = std::make_unique<codec::DtmfDetector>();
        detector_rate_ = std::make_unique<RateConverter>(kDetectorRate);
    }
    for (const char digit : detector_->process(detector_rate_->convert(received_, receive_->sample_rate()))) {
        on_digit_started(digit);
        on_digit_ended({digit, -1}, "inband");
    }
}

std::span<const std::int16_t> Leg::drain_held(Clock::time_point now) {
    if (!receive_ || receive_->held_frames() == 0) return {};
    return receive_->pull(to_ms(now));
}

void Leg::send_local_frame(std::span<const std::uint8_t> payload, std::uint8_t payload_type,
                           std::uint32_t timestamp, bool marker, Clock::time_point now) {
    send_frame({payload, payload_type, timestamp, audio_sequence_++, marker, audio_stream_}, now);
    audio_sent_this_tick_ = true;
}

void Leg::send_local_audio(std::span<const std::int16_t> pcm, int sample_rate, Clock::time_point now) {
    if (!send_) send_ = std::make_unique<SendPath>(codec_.name, codec::parse_fmtp(codec_.fmtp));
    const codec::Payload& payload = send_->encode(pcm, sample_rate);
    // The first packet of a talkspurt carries the marker (RFC 3551 4.1).
    if (!payload.empty()) send_local_frame(payload, codec_.payload_type, audio_timestamp_, !audio_sent_last_tick_, now);
}

bool Leg::send_queued_dtmf(Clock::time_point now) {
    // Most ticks of most legs: no digit queued or under way (checked without
    // touching the senders, which exist only once a digit was sent).
    if (digits_out_.empty() && !(event_sender_ && event_sender_->busy()) && !(tone_digit_ && tone_digit_->busy())) {
        return false;
    }
    if (audio_.telephone_event >= 0) {
        if (!event_sender_) event_sender_ = std::make_unique<codec::TelephoneEventSender>(codec_.clock_rate, kFrameMs);
        if (!event_sender_->busy() && !digits_out_.empty()) {
            const QueuedDigit next = digits_out_.front();
            digits_out_.pop_front();
            event_sender_->start(codec::dtmf_event(next.digit), audio_timestamp_, next.duration_ms);
        }
        const auto packet = event_sender_->next();
        if (!packet) return false;
        send_local_frame(packet->payload, static_cast<std::uint8_t>(audio_.telephone_event), packet->timestamp,
                         packet->marker, now);
        return true;
    }
    if ((!tone_digit_ || !tone_digit_->busy()) && !digits_out_.empty()) {
        const QueuedDigit next = digits_out_.front();
        digits_out_.pop_front();
        tone_digit_ = std::make_unique<codec::DtmfGenerator>(kInbandLevelDbm0, 0, next.duration_ms, kInbandPauseMs);
        tone_digit_->queue(std::string(1, next.digit));
    }
    if (!tone_digit_ || !tone_digit_->busy()) return false;
    const codec::Pcm tone = tone_digit_->generate(frame_samples(kDetectorRate));
    send_local_audio(tone, kDetectorRate, now);
    return true;
}

void Leg::send_audio(Clock::time_point now) {
    audio_sent_this_tick_ = false;
    if (send_queued_dtmf(now)) {
        // DTMF replaces the audio while it lasts.
    } else if (source_) {
        source_frame_.resize(frame_samples(static_cast<int>(source_->sample_rate())));
        if (source_->next(source_frame_)) {
            send_local_audio(source_frame_, static_cast<int>(source_->sample_rate()), now);
        } else {
            finish_playback(source_->end());
        }
    } else if (!fed_payload_.empty()) {
        send_local_frame(fed_payload_, codec_.payload_type, audio_timestamp_, !audio_sent_last_tick_, now);
    } else if (!fed_pcm_.empty()) {
        send_local_audio(fed_pcm_, fed_rate_, now);
    } else if (bridged_ != nullptr && !relay_ && !bridged_->received_.empty()) {
        send_local_audio(bridged_->received_, bridged_->received_rate(), now);
    }
    fed_payload_ = {};
    fed_pcm_ = {};
    audio_sent_last_tick_ = audio_sent_this_tick_;
    // The leg's own stream runs on the tick's clock, sent or not (RFC 3550 5.1).
    audio_timestamp_ += codec_.clock_rate / 1000 * kFrameMs;
}

void Leg::after_tick(Clock::time_point now) {
    if (digits_in_) {
        if (const auto digit = digits_in_->expire(to_ms(now))) on_digit_ended(*digit, "rfc4733");
    }
    if (audio_.stats_interval.count() > 0 && now >= next_stats_at_) {
        if (next_stats_at_ != Clock::time_point{}) {
            Event event{"stats", id_};
            event.stats = stats();
            host().post_event(std::move(event));
        }
        next_stats_at_ = now + audio_.stats_interval;
    }
}

void Leg::feed_mix(std::span<const std::int16_t> pcm, int sample_rate) {
    fed_pcm_ = pcm;
    fed_rate_ = sample_rate;
}

void Leg::feed_encoded(std::span<const std::uint8_t> payload) { fed_payload_ = payload; }

void Leg::send_dtmf(const std::string& digits, int duration_ms) {
    for (const char digit : digits) digits_out_.push_back({digit, duration_ms});
}

void Leg::play(std::unique_ptr<AudioSource> source) {
    if (source_) finish_playback({"stopped", "replaced"});
    source_ = std::move(source);
}

void Leg::stop_playback() {
    if (source_) finish_playback({"stopped", {}});
}

void Leg::finish_playback(SourceEnd end) {
    source_.reset();
    Event event{"playback_finished", id_, std::move(end.detail), std::move(end.reason)};
    host().post_event(std::move(event));
}

std::optional<jitter::Stats> Leg::jitter_stats() const {
    if (!receive_) return std::nullopt;
    return receive_->stats();
}

}  // namespace callbox::engine
