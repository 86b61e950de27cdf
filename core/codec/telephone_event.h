// RFC 4733 telephone-event: the 4-octet payload, a sender that turns one
// digit into its packet sequence and a receiver that reports each digit once.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>

#include "codec/codec.h"

namespace callbox::codec {

/// One telephone-event payload (RFC 4733 section 2.3).
struct TelephoneEvent {
    std::uint8_t event = 0;      // 0-9, 10 '*', 11 '#', 12-15 'A'-'D', ...
    bool end = false;            // E bit: the last packet(s) of the event
    std::uint8_t volume = 10;    // power level, 0 to 63 dBm0 below zero (sign dropped)
    std::uint16_t duration = 0;  // in RTP timestamp units since the event began

    std::array<std::uint8_t, 4> encode() const;
    /// CodecError on a payload shorter than 4 octets.
    static TelephoneEvent decode(std::span<const std::uint8_t> payload);
};

/// The event code of a DTMF digit (0-9 * # A-D), CodecError for others.
std::uint8_t dtmf_event(char digit);
/// The digit of a DTMF event code (0-15), CodecError for others.
char dtmf_digit(std::uint8_t event);

/// One RTP packet a sender wants to send.
struct TelephoneEventPacket {
    bool marker;
    std::uint32_t timestamp;  // the event's start: the same for all its packets
    std::array<std::uint8_t, 4> payload;
};

/// Sends one event at a time as RFC 4733 says: the first packet has the
/// marker bit, every packet interval brings an update with the grown
/// duration, and the end packet goes out three times (2.5.1.4) with the
/// same timestamp. The engine calls next() once per packet interval.
class TelephoneEventSender {
public:
    /// clock_rate: the RTP clock of the stream; packet_ms: the interval.
    TelephoneEventSender(int clock_rate, int packet_ms);

    /// Starts an event at RTP timestamp ``timestamp`` lasting ``duration_ms``.
    /// CodecError if one is still being sent or the duration does not fit in
    /// one event's 16-bit duration field.
    void start(std::uint8_t event, std::uint32_t timestamp, int duration_ms, int volume = 10);
    bool busy() const { return remaining_end_packets_ > 0; }
    /// The packet for this interval, or nothing when idle.
    std::optional<TelephoneEventPacket> next();

private:
    std::uint32_t increment_;  // timestamp units per packet interval
    std::uint32_t clock_rate_;
    TelephoneEvent current_{};
    std::uint32_t timestamp_ = 0;
    std::uint32_t target_duration_ = 0;
    bool first_ = false;
    int remaining_end_packets_ = 0;
};

/// A digit reported by the receiver.
struct ReceivedEvent {
    std::uint8_t event;
    std::uint32_t timestamp;
    std::uint8_t volume;
};

/// Reports each event once, on its first packet that arrives (the start
/// packet may be lost). A new event is one with a newer timestamp than the
/// last (RFC 4733 2.5.2.1); updates, retransmitted end packets and late
/// packets of older events are dropped.
class TelephoneEventReceiver {
public:
    /// ``payload`` of one telephone-event packet with its RTP timestamp.
    std::optional<ReceivedEvent> receive(std::uint32_t timestamp,
                                         std::span<const std::uint8_t> payload);

private:
    std::optional<std::uint32_t> last_timestamp_;
};

}  // namespace callbox::codec
