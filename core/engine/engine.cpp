#include "engine/engine.h"

#include <unistd.h>

#include <stdexcept>

#include "codec/telephone_event.h"
#include "engine/io.h"
#include "rtp/emodel.h"
#include "rtp/packet.h"

namespace callbox::engine {

namespace {

// How often the recorder's writer moves queued frames to disk: 12.5 frames
// per recording in one pwrite (8 KB of 8 kHz stereo, two pages) rather than
// one each 20 ms. A write's cost is mostly per call and per page touched
// (ext4's delayed allocation), and a write smaller than a page touches the
// same page again next time: at 100 ms the writes cost 6 % of a box with 900
// recorded calls. A killed process still loses at most this plus the
// header's 500 ms (record::kHeaderInterval): inside the promised second.
constexpr std::chrono::milliseconds kRecorderDrain{250};

}  // namespace

Engine::Engine(unsigned workers, std::uint16_t port_min, std::uint16_t port_max, std::string host)
    : host_(std::move(host)), port_min_(static_cast<std::uint16_t>(port_min + (port_min % 2))),
      port_max_(port_max), next_port_(port_min_) {
    if (workers == 0 || workers > 256) {
        throw std::invalid_argument("workers must be 1..256: got " + std::to_string(workers));
    }
    if (port_min == 0 || port_min + (port_min % 2u) + 1u > port_max) {
        throw std::invalid_argument("the RTP port range " + std::to_string(port_min) + "-" +
                                    std::to_string(port_max) + " holds no even/odd port pair");
    }
    ipv4_address(host_, 0);  // refuses a bad address now rather than at the first leg
    for (unsigned i = 0; i < workers; ++i) workers_.push_back(std::make_unique<Worker>(events_));
}

Engine::~Engine() { close(); }

void Engine::close() {
    record::RecorderService* recorder = nullptr;
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
        recorder = recorder_.get();
    }
    for (auto& worker : workers_) worker->stop();
    // Recordings still open are finished once nothing feeds them any more.
    if (recorder != nullptr) recorder->stop();
}

template <class Work>
auto Engine::on_worker(unsigned worker, Work work) -> decltype(work(std::declval<Worker&>(), Clock::now())) {
    using Result = decltype(work(std::declval<Worker&>(), Clock::now()));
    auto promise = std::make_shared<std::promise<Result>>();
    auto future = promise->get_future();
    workers_[worker]->post([promise, work = std::move(work)](Worker& w, Clock::time_point now) mutable {
        try {
            if constexpr (std::is_void_v<Result>) {
                work(w, now);
                promise->set_value();
            } else {
                promise->set_value(work(w, now));
            }
        } catch (...) {
            promise->set_exception(std::current_exception());
        }
    });
    return future.get();
}

unsigned Engine::worker_of(LegId leg) {
    std::lock_guard lock(mutex_);
    if (closed_) throw std::runtime_error("the media engine is closed");
    const auto it = leg_worker_.find(leg);
    if (it == leg_worker_.end()) throw std::invalid_argument("no leg " + std::to_string(leg) + " in this engine");
    return it->second;
}

unsigned Engine::place(std::optional<LegId> beside) {
    if (beside) return worker_of(*beside);
    std::lock_guard lock(mutex_);
    return next_worker_++ % worker_count();
}

std::pair<int, int> Engine::bind_ports(bool rtcp_mux, std::uint16_t& port) {
    std::lock_guard lock(mutex_);
    if (closed_) throw std::runtime_error("the media engine is closed");
    // Walk the range from where the last leg stopped, so a port just freed is
    // not handed out again at once (late packets of the old call may still come).
    const unsigned pairs = (port_max_ - port_min_ + 1u) / 2;
    for (unsigned tried = 0; tried < pairs; ++tried) {
        const std::uint16_t candidate = next_port_;
        next_port_ = candidate + 2 > port_max_ - 1 ? port_min_ : static_cast<std::uint16_t>(candidate + 2);
        const int rtp_fd = open_udp(host_, candidate);
        if (rtp_fd < 0) continue;
        if (rtcp_mux) {
            port = candidate;
            return {rtp_fd, -1};
        }
        const int rtcp_fd = open_udp(host_, static_cast<std::uint16_t>(candidate + 1));
        if (rtcp_fd >= 0) {
            port = candidate;
            return {rtp_fd, rtcp_fd};
        }
        ::close(rtp_fd);
    }
    throw std::runtime_error("no free RTP port pair in " + std::to_string(port_min_) + "-" +
                             std::to_string(port_max_) + " on " + host_);
}

LegPorts Engine::create_rtp_leg(RtpLegConfig config, std::optional<LegId> beside) {
    if (rtp::codec_impairment(config.codec.name) == nullptr) {
        throw std::invalid_argument("unknown codec '" + config.codec.name + "'");
    }
    if (config.codec.payload_type > 127) {
        throw std::invalid_argument("payload_type must be in 0..127: got " +
                                    std::to_string(config.codec.payload_type));
    }
    if (config.codec.clock_rate == 0) throw std::invalid_argument("clock_rate must be positive");
    if (config.rtcp_interval.count() <= 0) throw std::invalid_argument("rtcp_interval must be positive");
    const int event_type = config.audio.telephone_event;
    if (event_type < -1 || event_type > 127 || event_type == config.codec.payload_type) {
        throw std::invalid_argument("telephone_event must be a payload type in 0..127 other than the codec's (" +
                                    std::to_string(config.codec.payload_type) + "): got " +
                                    std::to_string(event_type));
    }
    if (config.audio.stats_interval.count() < 0) throw std::invalid_argument("stats_interval must not be negative");
    // The codec and its fmtp are checked now, though the leg makes its encoder
    // and decoder only when its audio is first used on the worker.
    const codec::CodecInfo info = codec::codec_info(config.codec.name);
    if (config.codec.clock_rate != static_cast<std::uint32_t>(info.rtp_clock_rate)) {
        throw std::invalid_argument("clock_rate of " + info.name + " must be " + std::to_string(info.rtp_clock_rate) +
                                    ": got " + std::to_string(config.codec.clock_rate));
    }
    const codec::FmtpParams fmtp = codec::parse_fmtp(config.codec.fmtp);
    codec::make_decoder(config.codec.name, fmtp);
    codec::make_encoder(config.codec.name, fmtp);
    const unsigned worker = place(beside);
    std::uint16_t port = 0;
    const auto [rtp_fd, rtcp_fd] = bind_ports(config.rtcp_mux, port);
    LegId id = 0;
    {
        std::lock_guard lock(mutex_);
        id = next_leg_++;
        leg_worker_[id] = worker;
    }
    if (config.cname.empty()) config.cname = "leg" + std::to_string(id) + "@callbox";
    auto leg = std::make_unique<RtpLeg>(id, std::move(config), rtp_fd, rtcp_fd, Clock::now());
    // The leg moves to the worker inside the command; a shared_ptr keeps the
    // command copyable for std::function.
    auto owned = std::make_shared<std::unique_ptr<RtpLeg>>(std::move(leg));
    try {
        on_worker(worker, [owned](Worker& w, Clock::time_point) { w.add_leg(std::move(*owned)); });
    } catch (...) {
        std::lock_guard lock(mutex_);
        leg_worker_.erase(id);
        throw;
    }
    return {id, port, rtcp_fd >= 0 ? static_cast<std::uint16_t>(port + 1) : port};
}

namespace {

void detach_bridge(Leg& leg) {
    if (Leg* peer = leg.bridged()) peer->set_bridged(nullptr);
    leg.set_bridged(nullptr);
}

void leave_conference(Leg& leg) {
    if (Conference* conference = leg.conference()) conference->remove(leg.id(), &leg);
}

RtpLeg& as_rtp(Leg& leg) {
    auto* rtp = dynamic_cast<RtpLeg*>(&leg);
    if (rtp == nullptr) throw std::invalid_argument("leg " + std::to_string(leg.id()) + " is not an RTP leg");
    return *rtp;
}

}  // namespace

void Engine::set_remote(LegId leg, const std::string& host, std::uint16_t rtp_port, std::uint16_t rtcp_port) {
    const sockaddr_in rtp = ipv4_address(host, rtp_port);
    const sockaddr_in rtcp = ipv4_address(host, rtcp_port);
    on_worker(worker_of(leg), [=](Worker& w, Clock::time_point now) { as_rtp(w.leg(leg)).set_remote(rtp, rtcp, now); });
}

void Engine::set_hold(LegId leg, bool on_hold) {
    on_worker(worker_of(leg), [=](Worker& w, Clock::time_point now) { w.leg(leg).set_hold(on_hold, now); });
}

void Engine::set_inband_dtmf(LegId leg, bool on) {
    on_worker(worker_of(leg), [=](Worker& w, Clock::time_point) { w.leg(leg).set_inband_dtmf(on); });
}

void Engine::send(LegId leg, std::vector<std::uint8_t> payload, std::uint32_t timestamp, bool marker) {
    if (payload.size() > kMaxDatagram - rtp::kFixedHeaderSize) {
        throw std::invalid_argument("a frame's payload must fit one datagram (at most " +
                                    std::to_string(kMaxDatagram - rtp::kFixedHeaderSize) +
                                    " bytes): got " + std::to_string(payload.size()));
    }
    auto data = std::make_shared<std::vector<std::uint8_t>>(std::move(payload));
    workers_[worker_of(leg)]->post([=](Worker& w, Clock::time_point now) {
        // The leg may have been closed since: a frame for it has nowhere to go.
        try {
            w.leg(leg).send_local(*data, timestamp, marker, now);
        } catch (const std::invalid_argument&) {
        }
    });
}

void Engine::bridge(LegId a, LegId b) {
    if (a == b) throw std::invalid_argument("cannot bridge leg " + std::to_string(a) + " to itself");
    const unsigned worker = worker_of(a);
    if (worker_of(b) != worker) {
        throw std::invalid_argument("legs " + std::to_string(a) + " and " + std::to_string(b) +
                                    " are on different workers: create the second with beside=the first");
    }
    on_worker(worker, [=](Worker& w, Clock::time_point) {
        Leg& left = w.leg(a);
        Leg& right = w.leg(b);
        for (Leg* leg : {&left, &right}) {
            detach_bridge(*leg);
            leave_conference(*leg);
        }
        left.set_bridged(&right);
        right.set_bridged(&left);
    });
}

void Engine::unbridge(LegId leg) {
    on_worker(worker_of(leg), [=](Worker& w, Clock::time_point) { detach_bridge(w.leg(leg)); });
}

ConferenceId Engine::create_conference(int sample_rate, LegId beside) {
    auto conference = std::make_shared<std::unique_ptr<Conference>>();
    const unsigned worker = worker_of(beside);
    ConferenceId id = 0;
    {
        std::lock_guard lock(mutex_);
        id = next_conference_++;
    }
    *conference = std::make_unique<Conference>(id, sample_rate);
    on_worker(worker, [=](Worker& w, Clock::time_point) { w.add_conference(std::move(*conference)); });
    std::lock_guard lock(mutex_);
    conference_worker_[id] = worker;
    return id;
}

unsigned Engine::worker_of_conference(ConferenceId conference) {
    std::lock_guard lock(mutex_);
    if (closed_) throw std::runtime_error("the media engine is closed");
    const auto it = conference_worker_.find(conference);
    if (it == conference_worker_.end()) {
        throw std::invalid_argument("no conference " + std::to_string(conference) +
                                    " in this engine (closed already?)");
    }
    return it->second;
}

template <class Work>
void Engine::on_conference(ConferenceId conference, Work work) {
    on_worker(worker_of_conference(conference),
              [=](Worker& w, Clock::time_point) { work(w, w.conference(conference)); });
}

void Engine::conference_add(ConferenceId conference, LegId leg) {
    if (worker_of(leg) != worker_of_conference(conference)) {
        throw std::invalid_argument("leg " + std::to_string(leg) + " is on another worker than conference " +
                                    std::to_string(conference) + ": create it with beside=a member");
    }
    on_conference(conference, [=](Worker& w, Conference& c) {
        Leg& member = w.leg(leg);
        if (member.conference() == &c) return;
        detach_bridge(member);
        leave_conference(member);
        c.add(member);
    });
}

void Engine::conference_remove(ConferenceId conference, LegId leg) {
    on_conference(conference, [=](Worker& w, Conference& c) { c.remove(leg, w.find_leg(leg)); });
}

void Engine::conference_set_gain(ConferenceId conference, LegId leg, std::int32_t gain_q12) {
    on_conference(conference, [=](Worker&, Conference& c) { c.set_gain(leg, gain_q12); });
}

void Engine::conference_set_muted(ConferenceId conference, LegId leg, bool muted) {
    on_conference(conference, [=](Worker&, Conference& c) { c.set_muted(leg, muted); });
}

void Engine::conference_set_hears(ConferenceId conference, LegId listener, LegId talker, bool hears) {
    on_conference(conference, [=](Worker&, Conference& c) { c.set_hears(listener, talker, hears); });
}

void Engine::close_conference(ConferenceId conference) {
    on_worker(worker_of_conference(conference), [=](Worker& w, Clock::time_point) { w.remove_conference(conference); });
    std::lock_guard lock(mutex_);
    conference_worker_.erase(conference);
}

void Engine::send_dtmf(LegId leg, const std::string& digits, int duration_ms) {
    if (digits.empty()) throw std::invalid_argument("no DTMF digits to send");
    for (const char digit : digits) codec::dtmf_event(digit);  // names a digit that is not DTMF
    const unsigned worker = worker_of(leg);
    on_worker(worker, [=](Worker& w, Clock::time_point) {
        Leg& l = w.leg(leg);
        // A sender refuses a duration its 16-bit field cannot hold at the leg's clock.
        codec::TelephoneEventSender(static_cast<int>(l.codec().clock_rate), kFrameMs).start(0, 0, duration_ms);
        l.send_dtmf(digits, duration_ms);
    });
}

void Engine::play(LegId leg, std::unique_ptr<AudioSource> source) {
    const unsigned rate = source->sample_rate();
    if (rate != 8000 && rate != 16000 && rate != 48000) {
        throw std::invalid_argument("an audio source must play at 8000, 16000 or 48000 Hz: got " +
                                    std::to_string(rate));
    }
    auto owned = std::make_shared<std::unique_ptr<AudioSource>>(std::move(source));
    on_worker(worker_of(leg), [=](Worker& w, Clock::time_point) { w.leg(leg).play(std::move(*owned)); });
}

void Engine::stop_playback(LegId leg) {
    on_worker(worker_of(leg), [=](Worker& w, Clock::time_point) { w.leg(leg).stop_playback(); });
}

std::uint64_t Engine::record(record::RecordingSettings settings, LegId left, LegId right) {
    if (left == right) {
        throw std::invalid_argument("a recording needs two different legs: got " + std::to_string(left) + " twice");
    }
    const unsigned worker = worker_of(left);
    if (worker_of(right) != worker) {
        throw std::invalid_argument("legs " + std::to_string(left) + " and " + std::to_string(right) +
                                    " are on different workers: create the second with beside=the first");
    }
    std::uint64_t id = 0;
    record::RecorderService* recorder = nullptr;
    {
        std::lock_guard lock(mutex_);
        if (!recorder_) recorder_ = std::make_unique<record::RecorderService>(kRecorderDrain);
        recorder = recorder_.get();
        id = next_recording_++;
    }
    std::shared_ptr<record::Recording> recording = recorder->start(std::move(settings));
    try {
        on_worker(worker, [=](Worker& w, Clock::time_point) { w.add_tap(id, {recording, left, right}); });
    } catch (...) {
        recorder->close(recording);
        throw;
    }
    std::lock_guard lock(mutex_);
    recordings_[id] = {worker, recording};
    return id;
}

Engine::ActiveRecording Engine::recording_of(std::uint64_t recording) {
    std::lock_guard lock(mutex_);
    const auto it = recordings_.find(recording);
    if (it == recordings_.end()) {
        throw std::invalid_argument("no recording " + std::to_string(recording) + " in this engine (stopped already?)");
    }
    return it->second;
}

void Engine::pause_recording(std::uint64_t recording, bool paused) {
    // The recording's flag is atomic: no need to wait for the worker.
    const ActiveRecording active = recording_of(recording);
    if (paused) {
        active.recording->pause();
    } else {
        active.recording->resume();
    }
}

record::RecordingInfo Engine::stop_recording(std::uint64_t recording) {
    const ActiveRecording active = recording_of(recording);
    {
        std::lock_guard lock(mutex_);
        recordings_.erase(recording);
    }
    try {
        on_worker(active.worker, [=](Worker& w, Clock::time_point now) { w.remove_tap(recording, now); });
    } catch (const std::runtime_error&) {
        // The engine closed: its workers feed nothing any more.
    }
    return recorder_->close(active.recording);
}

LegStats Engine::stats(LegId leg) {
    return on_worker(worker_of(leg), [=](Worker& w, Clock::time_point) { return w.leg(leg).stats(); });
}

std::vector<std::optional<LegStats>> Engine::stats(const std::vector<LegId>& legs) {
    std::vector<std::optional<LegStats>> out(legs.size());
    std::vector<std::vector<std::size_t>> on(workers_.size());  // per worker, indexes into `legs`
    {
        std::lock_guard lock(mutex_);
        if (closed_) throw std::runtime_error("the media engine is closed");
        for (std::size_t i = 0; i < legs.size(); ++i) {
            const auto it = leg_worker_.find(legs[i]);
            if (it != leg_worker_.end()) on[it->second].push_back(i);
        }
    }
    // Posted to every worker before waiting on any: the workers answer at once.
    std::vector<std::future<void>> answers;
    for (unsigned worker = 0; worker < on.size(); ++worker) {
        if (on[worker].empty()) continue;
        auto done = std::make_shared<std::promise<void>>();
        answers.push_back(done->get_future());
        try {
            workers_[worker]->post([&, worker, done](Worker& w, Clock::time_point) {
                try {
                    // A leg closed after the lookup above is simply left out.
                    for (const std::size_t i : on[worker])
                        if (Leg* leg = w.find_leg(legs[i])) out[i] = leg->stats();
                    done->set_value();
                } catch (...) {
                    done->set_exception(std::current_exception());
                }
            });
        } catch (...) {
            answers.pop_back();
            for (auto& answer : answers) answer.wait();  // they write into this frame
            throw;
        }
    }
    // Every worker done with this frame's vectors before an error leaves it.
    for (auto& answer : answers) answer.wait();
    for (auto& answer : answers) answer.get();
    return out;
}

LegStats Engine::close_leg(LegId leg) {
    LegStats last = on_worker(worker_of(leg), [=](Worker& w, Clock::time_point) {
        LegStats s = w.leg(leg).stats();
        w.remove_leg(leg);
        return s;
    });
    std::lock_guard lock(mutex_);
    leg_worker_.erase(leg);
    return last;
}

}  // namespace callbox::engine
