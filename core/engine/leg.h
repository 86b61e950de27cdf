// The leg interface: what a worker, a bridge and (later) the jitter buffer,
// mixer and recorder see of a call leg. Frames carry codec payload and timing,
// never transport headers, so an E1 channel or WebRTC leg can implement it too.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace callbox::engine {

using Clock = std::chrono::steady_clock;
using LegId = std::uint64_t;

// One frame of media on its way through the engine.
struct Frame {
    std::span<const std::uint8_t> payload;
    std::uint8_t payload_type = 0;
    std::uint32_t timestamp = 0;
    std::uint16_t sequence = 0;  // the source's count, so a relay keeps its gaps and order
    bool marker = false;
    // Identifies one continuous source stream; a new value tells the receiving
    // leg to re-base its own sequence and timestamp (a new bridge, a new SSRC).
    std::uint64_t stream = 0;
};

struct CodecSpec {
    std::string name;  // SDP encoding name, e.g. PCMU
    std::uint8_t payload_type = 0;
    std::uint32_t clock_rate = 8000;
};

// Quality and counters of one leg (RFC 3550 statistics plus the E-model).
struct LegStats {
    std::uint32_t local_ssrc = 0;
    std::uint32_t remote_ssrc = 0;
    std::string remote;  // "ip:port" the leg sends to (latched), empty if none
    std::uint64_t packets_received = 0;
    std::uint64_t octets_received = 0;
    std::uint64_t packets_sent = 0;
    std::uint64_t octets_sent = 0;
    std::uint64_t malformed = 0;  // datagrams that were not valid RTP/RTCP
    std::uint64_t foreign = 0;    // RTP from an address the leg has not latched to
    std::int64_t expected = 0;
    std::int64_t lost = 0;
    std::uint64_t duplicates = 0;
    std::uint64_t reordered = 0;
    double jitter_ms = 0;
    std::uint64_t rtcp_sent = 0;
    std::uint64_t rtcp_received = 0;
    double rtt_ms = -1;                  // from RTCP LSR/DLSR; -1 until known
    int remote_fraction_lost = -1;       // what the far end reports, /256; -1 until known
    std::int64_t remote_cumulative_lost = 0;
    double remote_jitter_ms = 0;
    double r_factor = 0;
    double mos = 0;
};

struct Event {
    std::string kind;  // rtp_timeout, rtp_resumed, latched, bye
    LegId leg = 0;
    std::string detail;
};

class Outbox;
class Inbox;

// What a leg may use of the worker it lives on.
class LegHost {
public:
    virtual Outbox& outbox() = 0;
    virtual Inbox& inbox() = 0;
    virtual void post_event(Event event) = 0;

protected:
    ~LegHost() = default;
};

class Leg {
public:
    explicit Leg(LegId id) : id_(id), local_stream_((id << 32) | 0xFFFFFFFFu) {}
    virtual ~Leg() = default;
    Leg(const Leg&) = delete;
    Leg& operator=(const Leg&) = delete;

    LegId id() const { return id_; }
    virtual const CodecSpec& codec() const = 0;
    // File descriptors the worker watches for this leg.
    virtual std::vector<int> fds() const = 0;
    virtual void on_readable(int fd, Clock::time_point now) = 0;
    // Periodic work at each worker tick: timeouts, reports.
    virtual void on_tick(Clock::time_point now) = 0;
    // A frame toward the far end.
    virtual void send_frame(const Frame& frame, Clock::time_point now) = 0;
    virtual void set_hold(bool on_hold, Clock::time_point now) = 0;
    virtual LegStats stats() const = 0;

    void attach(LegHost& host) { host_ = &host; }
    Leg* bridged() const { return bridged_; }
    void set_bridged(Leg* peer) { bridged_ = peer; }

    // A frame that Python hands in: it forms one stream of its own.
    void send_local(std::span<const std::uint8_t> payload, std::uint32_t timestamp, bool marker,
                    Clock::time_point now) {
        send_frame({payload, codec().payload_type, timestamp, local_sequence_++, marker, local_stream_},
                   now);
    }

protected:
    LegHost& host() { return *host_; }
    // A frame from the far end: relayed at once to the bridged leg, if any.
    void deliver(const Frame& frame, Clock::time_point now) {
        if (bridged_ != nullptr) bridged_->send_frame(frame, now);
    }

private:
    LegId id_;
    std::uint64_t local_stream_;
    std::uint16_t local_sequence_ = 0;
    LegHost* host_ = nullptr;
    Leg* bridged_ = nullptr;
};

}  // namespace callbox::engine
