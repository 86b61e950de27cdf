// Python bindings of the media engine (core/engine/). Every call that waits
// for a worker releases the GIL while it waits.
#include <pybind11/stl.h>

#include <cmath>
#include <optional>
#include <string>

#include "bindings.h"
#include "codec/tones.h"
#include "engine/engine.h"
#include "engine/tone_source.h"
#include "pybuffer.h"

namespace py = pybind11;
namespace engine = callbox::engine;

using callbox::ByteView;

namespace {

py::dict stats_dict(const engine::LegStats& s) {
    py::dict d;
    d["local_ssrc"] = s.local_ssrc;
    d["remote_ssrc"] = s.remote_ssrc;
    d["remote"] = s.remote;
    d["packets_received"] = s.packets_received;
    d["octets_received"] = s.octets_received;
    d["packets_sent"] = s.packets_sent;
    d["octets_sent"] = s.octets_sent;
    d["malformed"] = s.malformed;
    d["foreign"] = s.foreign;
    d["expected"] = s.expected;
    d["lost"] = s.lost;
    d["duplicates"] = s.duplicates;
    d["reordered"] = s.reordered;
    d["jitter_ms"] = s.jitter_ms;
    d["rtcp_sent"] = s.rtcp_sent;
    d["rtcp_received"] = s.rtcp_received;
    d["rtt_ms"] = s.rtt_ms < 0 ? py::object(py::none()) : py::object(py::float_(s.rtt_ms));
    d["remote_fraction_lost"] =
        s.remote_fraction_lost < 0 ? py::object(py::none()) : py::object(py::int_(s.remote_fraction_lost));
    d["remote_cumulative_lost"] = s.remote_cumulative_lost;
    d["remote_jitter_ms"] = s.remote_jitter_ms;
    d["jitter_buffer"] = s.jitter_buffer ? py::object(callbox::bindings::jitter_stats_tuple(*s.jitter_buffer))
                                         : py::object(py::none());
    d["r_factor"] = s.r_factor;
    d["mos"] = s.mos;
    return d;
}

// Waits for the worker without the GIL, then builds the dict with it.
py::dict stats_of(engine::Engine& e, engine::LegId leg, engine::LegStats (engine::Engine::*get)(engine::LegId)) {
    engine::LegStats s;
    {
        py::gil_scoped_release release;
        s = (e.*get)(leg);
    }
    return stats_dict(s);
}

py::tuple event_tuple(const engine::Event& ev) {
    return py::make_tuple(ev.kind, ev.leg, ev.detail, ev.reason,
                          ev.duration_ms < 0 ? py::object(py::none()) : py::object(py::int_(ev.duration_ms)),
                          ev.stats ? py::object(stats_dict(*ev.stats)) : py::object(py::none()));
}

std::chrono::milliseconds to_ms(double seconds) {
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(seconds * 1000.0)));
}

}  // namespace

namespace callbox::bindings {

void bind_engine(py::module_& m) {
    using Release = py::call_guard<py::gil_scoped_release>;
    py::class_<engine::Engine>(m, "Engine")
        .def(py::init<unsigned, std::uint16_t, std::uint16_t, std::string>(), Release())
        .def(
            "create_rtp_leg",
            [](engine::Engine& e, const std::string& codec, unsigned payload_type, std::uint32_t clock_rate,
               bool rtcp_mux, double rtp_timeout, double rtcp_interval, const std::string& cname,
               std::optional<engine::LegId> beside, const std::string& fmtp, int telephone_event, bool inband_dtmf,
               double stats_interval) {
                if (payload_type > 127) {
                    throw py::value_error("payload_type must be in 0..127: got " + std::to_string(payload_type));
                }
                engine::RtpLegConfig config;
                config.codec = {codec, static_cast<std::uint8_t>(payload_type), clock_rate, fmtp};
                config.audio = {telephone_event, inband_dtmf, to_ms(stats_interval)};
                config.rtcp_mux = rtcp_mux;
                config.rtp_timeout = to_ms(rtp_timeout);
                config.rtcp_interval = to_ms(rtcp_interval);
                config.cname = cname;
                const engine::LegPorts ports = e.create_rtp_leg(std::move(config), beside);
                return std::make_tuple(ports.id, ports.rtp_port, ports.rtcp_port);
            },
            Release())
        .def("set_remote", &engine::Engine::set_remote, Release())
        .def("set_hold", &engine::Engine::set_hold, Release())
        .def("set_inband_dtmf", &engine::Engine::set_inband_dtmf, Release())
        .def("send",
             [](engine::Engine& e, engine::LegId leg, const py::object& payload, std::uint32_t timestamp,
                bool marker) {
                 ByteView view(payload);
                 std::vector<std::uint8_t> bytes(view.data(), view.data() + view.size());
                 py::gil_scoped_release release;
                 e.send(leg, std::move(bytes), timestamp, marker);
             })
        .def("bridge", &engine::Engine::bridge, Release())
        .def("unbridge", &engine::Engine::unbridge, Release())
        .def("send_dtmf", &engine::Engine::send_dtmf, Release())
        .def(
            "play_tone",
            [](engine::Engine& e, engine::LegId leg, const std::string& plan, const std::string& tone, int duration_ms,
               bool barge_in) {
                e.play(leg, std::make_unique<engine::ToneSource>(callbox::codec::tone_spec(plan, tone), duration_ms,
                                                                 barge_in));
            },
            Release())
        .def("play",
             [](engine::Engine& e, engine::LegId leg, const callbox::bindings::PlaylistItems& items, unsigned rate,
                bool loop, const std::string& barge_in) {
                 // Made here and handed over whole: the worker runs the player, Python never holds it.
                 auto player = callbox::bindings::make_player(items, rate, loop, barge_in);
                 py::gil_scoped_release release;
                 e.play(leg, std::move(player));
             })
        .def("stop_playback", &engine::Engine::stop_playback, Release())
        .def(
            "record",
            [](engine::Engine& e, const std::string& path, engine::LegId left, engine::LegId right, bool stereo,
               int sample_rate) {
                callbox::record::RecordingSettings settings;
                settings.path = path;
                settings.sample_rate = sample_rate;
                settings.layout = stereo ? callbox::record::Layout::stereo : callbox::record::Layout::mono;
                return e.record(std::move(settings), left, right);
            },
            Release())
        .def("pause_recording", &engine::Engine::pause_recording, Release())
        .def("stop_recording",
             [](engine::Engine& e, std::uint64_t recording) {
                 callbox::record::RecordingInfo info;
                 {
                     py::gil_scoped_release release;
                     info = e.stop_recording(recording);
                 }
                 return callbox::bindings::recording_info_tuple(info);
             })
        .def("create_conference", &engine::Engine::create_conference, Release())
        .def("conference_add", &engine::Engine::conference_add, Release())
        .def("conference_remove", &engine::Engine::conference_remove, Release())
        .def("conference_set_gain", &engine::Engine::conference_set_gain, Release())
        .def("conference_set_muted", &engine::Engine::conference_set_muted, Release())
        .def("conference_set_hears", &engine::Engine::conference_set_hears, Release())
        .def("close_conference", &engine::Engine::close_conference, Release())
        .def("stats", [](engine::Engine& e, engine::LegId leg) { return stats_of(e, leg, &engine::Engine::stats); })
        .def("stats_many",
             [](engine::Engine& e, const std::vector<engine::LegId>& legs) {
                 std::vector<std::optional<engine::LegStats>> all;
                 {
                     py::gil_scoped_release release;
                     all = e.stats(legs);
                 }
                 py::list out;
                 for (const auto& s : all) out.append(s ? py::object(stats_dict(*s)) : py::object(py::none()));
                 return out;
             })
        .def("close_leg",
             [](engine::Engine& e, engine::LegId leg) { return stats_of(e, leg, &engine::Engine::close_leg); })
        .def("poll_events",
             [](engine::Engine& e) {
                 py::list out;
                 for (const engine::Event& ev : e.poll_events()) out.append(event_tuple(ev));
                 return out;
             })
        .def("fileno", &engine::Engine::event_fd)
        .def("worker_count", &engine::Engine::worker_count)
        .def("worker_of", &engine::Engine::worker_of)
        .def("close", &engine::Engine::close, Release());
}

}  // namespace callbox::bindings
