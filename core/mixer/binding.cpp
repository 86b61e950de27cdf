// Python bindings of the mixer (core/mixer/). put() copies one frame and keeps
// the GIL; mix() does the tick's work with the GIL released, then builds the
// results. Values cross as ints, bytes and tuples; core/_mixer.py names them.
#include <pybind11/stl.h>

#include <span>

#include "bindings.h"
#include "mixer/mixer.h"
#include "pybuffer.h"

namespace py = pybind11;
namespace mixer = callbox::mixer;

using callbox::pcm_from;

namespace {

py::bytes pcm_bytes(std::span<const std::int16_t> pcm) {
    return py::bytes(reinterpret_cast<const char*>(pcm.data()), pcm.size_bytes());
}

}  // namespace

namespace callbox::bindings {

void bind_mixer(py::module_& m) {
    py::class_<mixer::Mixer>(m, "Mixer")
        .def(py::init([](std::uint32_t sample_rate, std::int64_t talk_threshold, std::uint32_t hangover_frames) {
            return mixer::Mixer({sample_rate, talk_threshold, hangover_frames});
        }))
        .def("frame_samples", &mixer::Mixer::frame_samples)
        .def("add", &mixer::Mixer::add)
        .def("remove", &mixer::Mixer::remove)
        .def("set_gain", &mixer::Mixer::set_gain)
        .def("set_muted", &mixer::Mixer::set_muted)
        .def("set_hears", &mixer::Mixer::set_hears)
        .def("hears", &mixer::Mixer::hears)
        .def("talking", &mixer::Mixer::talking)
        .def("participants", &mixer::Mixer::participants)
        .def("limiter_gain_q15", &mixer::Mixer::limiter_gain_q15)
        .def("put",
             [](mixer::Mixer& mx, std::uint32_t id, const py::object& pcm) {
                 mx.put(id, pcm_from(pcm));
             })
        .def("mix", [](mixer::Mixer& mx) {
            {
                py::gil_scoped_release release;
                mx.mix();
            }
            py::list own;
            for (const mixer::OwnMix& o : mx.own()) own.append(py::make_tuple(o.participant, pcm_bytes(o.pcm)));
            py::list events;
            for (const mixer::TalkEvent& e : mx.events()) events.append(py::make_tuple(e.participant, e.talking));
            return py::make_tuple(pcm_bytes(mx.common()), mx.shared(), own, events);
        });
}

}  // namespace callbox::bindings
