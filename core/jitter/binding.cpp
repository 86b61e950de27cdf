// Python bindings of the jitter buffer (core/jitter/). Values cross as ints
// and tuples; core/__init__.py names them. put() and get() keep the GIL: they
// take well under a microsecond, less than releasing and taking it back.
#include <pybind11/stl.h>

#include "bindings.h"
#include "jitter/jitter.h"
#include "pybuffer.h"

namespace py = pybind11;
namespace jitter = callbox::jitter;

namespace callbox::bindings {

py::tuple jitter_stats_tuple(const jitter::Stats& s) {
    return py::make_tuple(s.received, s.duplicates, s.late, s.lost, s.discarded, s.flushes, s.buffering,
                          s.normal, s.merged, s.expanded, s.accelerated, s.preemptive_expanded,
                          s.waiting_ms_total, s.target_delay_ms, s.buffer_delay_ms, s.max_buffer_delay_ms,
                          s.buffered_frames);
}


void bind_jitter(py::module_& m) {
    py::class_<jitter::JitterBuffer>(m, "JitterBuffer")
        .def(py::init([](std::uint32_t clock_rate, std::int64_t min_delay_ms, std::int64_t max_delay_ms,
                         std::size_t max_frames) {
            return jitter::JitterBuffer({clock_rate, min_delay_ms, max_delay_ms, max_frames});
        }))
        .def("put",
             [](jitter::JitterBuffer& jb, const py::object& payload, std::uint32_t timestamp,
                std::uint16_t sequence, std::uint32_t samples, std::int64_t arrival_ms, std::uint32_t source) {
                 ByteView in(payload);
                 return static_cast<int>(
                     jb.put({in.data(), in.size()}, timestamp, sequence, samples, arrival_ms, source));
             })
        .def("get",
             [](jitter::JitterBuffer& jb, std::int64_t now_ms, bool low_energy) {
                 jitter::Output out;
                 jb.get(now_ms, low_energy, out);
                 py::object payload = py::none();
                 if (out.has_frame) {
                     payload = py::bytes(reinterpret_cast<const char*>(out.payload.data()), out.payload.size());
                 }
                 return py::make_tuple(static_cast<int>(out.decision), payload, out.timestamp, out.sequence,
                                       out.samples);
             })
        .def("stats", [](const jitter::JitterBuffer& jb) { return jitter_stats_tuple(jb.stats()); })
        .def("target_delay_ms", &jitter::JitterBuffer::target_delay_ms)
        .def("buffer_delay_ms", &jitter::JitterBuffer::buffer_delay_ms);
}

}  // namespace callbox::bindings
