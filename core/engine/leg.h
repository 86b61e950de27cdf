// The leg interface: what a worker, a bridge, the recorder and a player see
// of a call leg. Frames carry codec payload and timing, never transport
// headers, so an E1 channel or WebRTC leg can implement it too; the audio
// side (jitter buffer, codecs, DTMF, playback) lives in this base class.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "codec/dtmf.h"
#include "engine/audio_source.h"
#include "engine/media.h"
#include "jitter/jitter.h"

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
    std::string fmtp;  // the far end's a=fmtp for it (Opus FEC, G.729 annex B, ...)
};

// What a leg does with audio beyond relaying it.
struct AudioOptions {
    int telephone_event = -1;  // RFC 4733 payload type from SDP; -1: none (DTMF goes in-band)
    bool inband_dtmf = false;  // run a DTMF detector on the decoded audio
    std::chrono::milliseconds stats_interval{0};  // a periodic stats event; 0: none
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
    std::optional<jitter::Stats> jitter_buffer;  // while the leg's audio is decoded on the worker
    double r_factor = 0;
    double mos = 0;
};

struct Event {
    Event(std::string kind_, LegId leg_, std::string detail_ = {}, std::string reason_ = {})
        : kind(std::move(kind_)), leg(leg_), detail(std::move(detail_)), reason(std::move(reason_)) {}

    // rtp_timeout, rtp_resumed, latched, bye, dtmf, playback_finished, stats
    std::string kind;
    LegId leg = 0;
    std::string detail;  // latched: the address; dtmf: the digit; playback_finished: SourceEnd::detail
    std::string reason;  // dtmf: "rfc4733" or "inband"; playback_finished: SourceEnd::reason
    int duration_ms = -1;  // dtmf over RFC 4733: how long the digit lasted
    std::optional<LegStats> stats;
};

class Outbox;
class Inbox;
class Conference;

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
    Leg(LegId id, CodecSpec codec, AudioOptions audio);
    virtual ~Leg();
    Leg(const Leg&) = delete;
    Leg& operator=(const Leg&) = delete;

    LegId id() const { return id_; }
    const CodecSpec& codec() const { return codec_; }
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
    // Bridges to `peer` (nullptr: none): a relay when both use one codec, else a transcoder.
    void set_bridged(Leg* peer);
    // Starts or stops in-band DTMF detection (an RFC 4733 leg detects none either way).
    void set_inband_dtmf(bool on);
    static bool same_codec(const CodecSpec& a, const CodecSpec& b);

    // A frame that Python hands in: it forms one stream of its own.
    void send_local(std::span<const std::uint8_t> payload, std::uint32_t timestamp, bool marker,
                    Clock::time_point now) {
        send_frame({payload, codec().payload_type, timestamp, local_sequence_++, marker, local_stream_},
                   now);
    }

    // The worker's tick, after on_tick(): first every leg takes this tick's
    // received audio, then every leg sends (so a transcoding bridge reads its
    // peer's audio of this tick), then the housekeeping. pull_audio() works
    // once per `frame` (the worker's count, from 1) however often it is
    // called: a recording takes its legs' audio before the other legs do.
    void pull_audio(Clock::time_point now, std::uint64_t frame);
    void send_audio(Clock::time_point now);
    void after_tick(Clock::time_point now);
    // This tick's received audio (empty while none: no PCM path, or buffering).
    std::span<const std::int16_t> received_audio() const { return received_; }
    int received_rate() const;
    // Consumers of the received audio besides a bridge: conferences, and
    // recordings (which need no low delay: docs/media.md, "Recording a relay").
    void add_audio_user() { ++audio_users_; }
    void remove_audio_user() { --audio_users_; }
    void add_recorder() {
        ++audio_users_;
        ++recorders_;
    }
    void remove_recorder() {
        --audio_users_;
        --recorders_;
    }
    int recorders() const { return recorders_; }
    // A recording stops: the next frame its leg's buffer still holds, or
    // nothing once it holds none (the call's last ~100 ms, when a recorded
    // relay plays behind the network).
    std::span<const std::int16_t> drain_held(Clock::time_point now);
    // Whether the far end hears this leg's received audio through the worker's
    // buffer (not so for a relay, recorded or not): its delay is the call's.
    bool conversation_buffered() const { return receive_ && receive_->in_conversation(); }

    // What a conference gives the leg to send this tick (when nothing with
    // priority plays): a mix to encode, or a payload already encoded for the
    // leg's codec. Both stay valid until the leg's send_audio().
    void feed_mix(std::span<const std::int16_t> pcm, int sample_rate);
    void feed_encoded(std::span<const std::uint8_t> payload);
    Conference* conference() const { return conference_; }
    void set_conference(Conference* conference) { conference_ = conference; }

    // Queues DTMF digits for the far end: RFC 4733 with the leg's
    // telephone-event payload type, in-band tones without one.
    void send_dtmf(const std::string& digits, int duration_ms);
    // Plays `source` instead of the bridged audio until it ends (replacing one playing).
    void play(std::unique_ptr<AudioSource> source);
    void stop_playback();

protected:
    LegHost& host() { return *host_; }
    // A frame from the far end: relayed at once to a same-codec peer, and
    // buffered for decoding when the worker consumes this leg's audio.
    void deliver(const Frame& frame, Clock::time_point now);
    // The jitter buffer's counters, while the leg's audio is decoded on the worker.
    std::optional<jitter::Stats> jitter_stats() const;

private:
    bool wants_audio() const;
    // In-band DTMF detection runs on the decoded audio (asked for, and no RFC 4733 events).
    bool detects_inband() const { return audio_.inband_dtmf && !digits_in_; }
    // Only recordings take the received audio, of a G.711 leg that relays or is not bridged.
    bool only_recorded() const;
    // receive_, made for who takes the audio now.
    AudioIn& receive_path();
    bool speaking_locally() const;
    void on_telephone_event(const Frame& frame, Clock::time_point now);
    void on_digit_started(char digit);
    void on_digit_ended(const Digit& digit, const char* how);
    void send_local_audio(std::span<const std::int16_t> pcm, int sample_rate, Clock::time_point now);
    void send_local_frame(std::span<const std::uint8_t> payload, std::uint8_t payload_type, std::uint32_t timestamp,
                          bool marker, Clock::time_point now);
    bool send_queued_dtmf(Clock::time_point now);
    void finish_playback(SourceEnd end);

    LegId id_;
    CodecSpec codec_;
    AudioOptions audio_;
    std::uint64_t local_stream_;
    std::uint16_t local_sequence_ = 0;
    LegHost* host_ = nullptr;
    Leg* bridged_ = nullptr;
    bool relay_ = false;  // bridged to a leg of the same codec

    // Received audio, decoded on the worker while someone consumes it.
    int audio_users_ = 0;
    int recorders_ = 0;
    std::optional<bool> g711_alaw_;  // PCMA or PCMU at 8 kHz: whether A-law; else empty
    std::unique_ptr<AudioIn> receive_;
    std::span<const std::int16_t> received_;
    std::uint64_t pulled_frame_ = 0;
    std::unique_ptr<codec::DtmfDetector> detector_;
    std::unique_ptr<RateConverter> detector_rate_;
    std::unique_ptr<TelephoneEventTracker> digits_in_;

    // Audio the leg makes itself: its own stream, numbered by the tick.
    std::uint64_t audio_stream_;
    std::uint16_t audio_sequence_ = 0;
    std::uint32_t audio_timestamp_ = 0;
    bool audio_sent_last_tick_ = false;
    bool audio_sent_this_tick_ = false;
    std::unique_ptr<SendPath> send_;
    std::unique_ptr<AudioSource> source_;
    std::vector<std::int16_t> source_frame_;
    struct QueuedDigit {
        char digit;
        int duration_ms;
    };
    std::deque<QueuedDigit> digits_out_;
    std::unique_ptr<codec::TelephoneEventSender> event_sender_;
    std::unique_ptr<codec::DtmfGenerator> tone_digit_;

    Clock::time_point next_stats_at_{};

    Conference* conference_ = nullptr;
    std::span<const std::int16_t> fed_pcm_;
    int fed_rate_ = 0;
    std::span<const std::uint8_t> fed_payload_;
};

}  // namespace callbox::engine
