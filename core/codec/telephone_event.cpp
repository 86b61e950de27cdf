#include "codec/telephone_event.h"

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

namespace callbox::codec {

namespace {

constexpr std::string_view kDtmfDigits = "0123456789*#ABCD";
constexpr int kEndPackets = 3;
constexpr std::uint32_t kMaxDuration = 0xFFFF;

}  // namespace

std::array<std::uint8_t, 4> TelephoneEvent::encode() const {
    return {event, static_cast<std::uint8_t>((end ? 0x80 : 0) | (volume & 0x3F)),
            static_cast<std::uint8_t>(duration >> 8), static_cast<std::uint8_t>(duration & 0xFF)};
}

TelephoneEvent TelephoneEvent::decode(std::span<const std::uint8_t> payload) {
    if (payload.size() < 4) {
        throw CodecError("telephone-event payload must be at least 4 octets: got " +
                         std::to_string(payload.size()));
    }
    TelephoneEvent e;
    e.event = payload[0];
    e.end = (payload[1] & 0x80) != 0;
    e.volume = payload[1] & 0x3F;
    e.duration = static_cast<std::uint16_t>((payload[2] << 8) | payload[3]);
    return e;
}

std::uint8_t dtmf_event(char digit) {
    const auto at = kDtmfDigits.find(static_cast<char>(std::toupper(digit)));
    if (at == std::string_view::npos) {
        throw CodecError(std::string("not a DTMF digit: '") + digit + "' (expected 0-9 * # A-D)");
    }
    return static_cast<std::uint8_t>(at);
}

char dtmf_digit(std::uint8_t event) {
    if (event >= kDtmfDigits.size()) {
        throw CodecError("telephone-event " + std::to_string(event) + " is not a DTMF digit");
    }
    return kDtmfDigits[event];
}

TelephoneEventSender::TelephoneEventSender(int clock_rate, int packet_ms)
    : increment_(0), clock_rate_(0) {
    if (clock_rate <= 0 || packet_ms <= 0 || clock_rate % 1000 != 0) {
        throw CodecError("telephone-event sender needs a positive clock rate in whole kHz and "
                         "packet interval: got " + std::to_string(clock_rate) + " Hz, " +
                         std::to_string(packet_ms) + " ms");
    }
    clock_rate_ = static_cast<std::uint32_t>(clock_rate);
    increment_ = clock_rate_ / 1000 * static_cast<std::uint32_t>(packet_ms);
}

void TelephoneEventSender::start(std::uint8_t event, std::uint32_t timestamp, int duration_ms,
                                 int volume) {
    if (busy()) throw CodecError("telephone-event sender is still sending an event");
    if (volume < 0 || volume > 63) {
        throw CodecError("telephone-event volume must be 0-63 (dBm0 below zero): got " +
                         std::to_string(volume));
    }
    const std::uint64_t duration =
        static_cast<std::uint64_t>(duration_ms < 0 ? 0 : duration_ms) * clock_rate_ / 1000;
    if (duration_ms <= 0 || duration > kMaxDuration) {
        throw CodecError("telephone-event duration must be from 1 ms to " +
                         std::to_string(kMaxDuration * 1000 / clock_rate_) + " ms at " +
                         std::to_string(clock_rate_) + " Hz: got " + std::to_string(duration_ms));
    }
    current_ = TelephoneEvent{event, false, static_cast<std::uint8_t>(volume), 0};
    timestamp_ = timestamp;
    target_duration_ = static_cast<std::uint32_t>(duration);
    first_ = true;
    remaining_end_packets_ = kEndPackets;
}

std::optional<TelephoneEventPacket> TelephoneEventSender::next() {
    if (!busy()) return std::nullopt;
    if (!current_.end) {
        const std::uint32_t grown = current_.duration + increment_;
        current_.duration = static_cast<std::uint16_t>(std::min(grown, target_duration_));
        current_.end = grown >= target_duration_;
    }
    if (current_.end) --remaining_end_packets_;
    const bool marker = first_;
    first_ = false;
    return TelephoneEventPacket{marker, timestamp_, current_.encode()};
}

std::optional<ReceivedEvent> TelephoneEventReceiver::receive(
    std::uint32_t timestamp, std::span<const std::uint8_t> payload) {
    const TelephoneEvent e = TelephoneEvent::decode(payload);
    // Serial-number comparison so the RTP timestamp may wrap.
    if (last_timestamp_ && static_cast<std::int32_t>(timestamp - *last_timestamp_) <= 0) {
        return std::nullopt;
    }
    last_timestamp_ = timestamp;
    return ReceivedEvent{e.event, timestamp, e.volume};
}

}  // namespace callbox::codec
