// The media engine: a set of workers, the RTP port range, and the event queue.
// Its methods are called from Python threads; each one that needs the worker
// queues a command, wakes the worker and waits for it to be applied there.
#pragma once

#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/audio_source.h"
#include "engine/events.h"
#include "engine/rtp_leg.h"
#include "engine/worker.h"
#include "record/recorder.h"

namespace callbox::engine {

struct LegPorts {
    LegId id = 0;
    std::uint16_t rtp_port = 0;
    std::uint16_t rtcp_port = 0;  // equals rtp_port with rtcp-mux
};

class Engine {
public:
    // Throws std::invalid_argument for a bad worker count, port range or address.
    Engine(unsigned workers, std::uint16_t port_min, std::uint16_t port_max, std::string host);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Binds a port pair and starts the leg on a worker (the one `beside` lives
    // on, if given, so the two can be bridged).
    LegPorts create_rtp_leg(RtpLegConfig config, std::optional<LegId> beside);
    void set_remote(LegId leg, const std::string& host, std::uint16_t rtp_port, std::uint16_t rtcp_port);
    void set_hold(LegId leg, bool on_hold);
    void set_inband_dtmf(LegId leg, bool on);
    // Queues one frame for the far end; does not wait.
    void send(LegId leg, std::vector<std::uint8_t> payload, std::uint32_t timestamp, bool marker);
    // Joins two legs (replacing earlier bridges): a relay of each one's frames
    // to the other when they share a codec, else a transcoder on the tick.
    void bridge(LegId a, LegId b);
    void unbridge(LegId leg);
    // Queues DTMF for the far end (RFC 4733, or in-band without telephone-event).
    void send_dtmf(LegId leg, const std::string& digits, int duration_ms);
    // Plays `source` into the leg instead of its bridged audio until it ends.
    void play(LegId leg, std::unique_ptr<AudioSource> source);
    void stop_playback(LegId leg);
    // Records the two legs' received audio (left and right channel, or their
    // sum) from the next tick on; returns the recording's id. Throws
    // std::invalid_argument for bad legs, record::RecordError for the file.
    std::uint64_t record(record::RecordingSettings settings, LegId left, LegId right);
    void pause_recording(std::uint64_t recording, bool paused);
    // Stops feeding the recording, finishes the file and says what it holds.
    record::RecordingInfo stop_recording(std::uint64_t recording);
    // A conference on `beside`'s worker, mixing at `sample_rate`; its members
    // must live there too.
    ConferenceId create_conference(int sample_rate, LegId beside);
    // Adds the leg (unbridging it first): it hears the others and they hear it.
    void conference_add(ConferenceId conference, LegId leg);
    void conference_remove(ConferenceId conference, LegId leg);
    void conference_set_gain(ConferenceId conference, LegId leg, std::int32_t gain_q12);
    void conference_set_muted(ConferenceId conference, LegId leg, bool muted);
    void conference_set_hears(ConferenceId conference, LegId listener, LegId talker, bool hears);
    void close_conference(ConferenceId conference);
    LegStats stats(LegId leg);
    // Many legs' statistics, in order, with one trip to each worker (not one
    // per leg); nullopt for a leg that is not (or no longer) in the engine.
    std::vector<std::optional<LegStats>> stats(const std::vector<LegId>& legs);
    // Closes the leg and returns its final statistics.
    LegStats close_leg(LegId leg);

    std::vector<Event> poll_events() { return events_.drain(); }
    int event_fd() const { return events_.fd(); }
    unsigned worker_count() const { return static_cast<unsigned>(workers_.size()); }
    unsigned worker_of(LegId leg);
    void close();

private:
    // Runs `work` on the leg's worker (woken for it) and returns its result.
    template <class Work>
    auto on_worker(unsigned worker, Work work) -> decltype(work(std::declval<Worker&>(), Clock::now()));
    unsigned place(std::optional<LegId> beside);
    std::pair<int, int> bind_ports(bool rtcp_mux, std::uint16_t& port);
    struct ActiveRecording {
        unsigned worker;
        std::shared_ptr<record::Recording> recording;
    };
    ActiveRecording recording_of(std::uint64_t recording);
    unsigned worker_of_conference(ConferenceId conference);
    // Runs `work` on the conference on its worker.
    template <class Work>
    void on_conference(ConferenceId conference, Work work);

    EventQueue events_;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::string host_;
    std::uint16_t port_min_;
    std::uint16_t port_max_;

    std::mutex mutex_;  // guards the fields below
    bool closed_ = false;
    std::uint16_t next_port_;
    LegId next_leg_ = 1;
    unsigned next_worker_ = 0;
    std::unordered_map<LegId, unsigned> leg_worker_;
    std::unique_ptr<record::RecorderService> recorder_;  // started with the first recording
    std::uint64_t next_recording_ = 1;
    std::unordered_map<std::uint64_t, ActiveRecording> recordings_;
    ConferenceId next_conference_ = 1;
    std::unordered_map<ConferenceId, unsigned> conference_worker_;
};

}  // namespace callbox::engine
