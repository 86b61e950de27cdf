// Python bindings of the call recorder (core/record/). write() keeps the GIL:
// it copies one frame, less work than releasing and taking it back. close()
// waits for the writer thread and wav_to_mp3() encodes, both without the GIL.
#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <string>

#include "bindings.h"
#include "pybuffer.h"
#include "record/recorder.h"

namespace py = pybind11;
namespace record = callbox::record;

namespace {

bool write_frame(record::Recording& r, const py::object& left, const py::object& right) {
    callbox::ByteView l(left);
    callbox::ByteView rr(right);
    const std::size_t bytes = r.frame_samples() * sizeof(std::int16_t);
    if (l.size() != bytes || rr.size() != bytes) {
        throw record::RecordError("a frame must be " + std::to_string(bytes) + " bytes (20 ms of 16-bit PCM): got " +
                                  std::to_string(l.size()) + " and " + std::to_string(rr.size()));
    }
    return r.push(reinterpret_cast<const std::int16_t*>(l.data()), reinterpret_cast<const std::int16_t*>(rr.data()));
}

}  // namespace

namespace callbox::bindings {

py::tuple recording_info_tuple(const record::RecordingInfo& i) {
    return py::make_tuple(i.path, i.sample_rate, i.channels, i.frames_written, i.frames_dropped, i.frames_paused,
                          i.pauses);
}


void bind_record(py::module_& m) {
    py::register_exception<record::RecordError>(m, "RecordError", PyExc_OSError);
    py::class_<record::Recording, std::shared_ptr<record::Recording>>(m, "Recording")
        .def("write", &write_frame)
        .def("pause", &record::Recording::pause)
        .def("resume", &record::Recording::resume)
        .def("paused", &record::Recording::paused)
        .def("frame_samples", &record::Recording::frame_samples);
    py::class_<record::RecorderService>(m, "RecorderService")
        .def(py::init([](int drain_interval_ms) {
            return std::make_unique<record::RecorderService>(std::chrono::milliseconds(drain_interval_ms));
        }))
        .def("start",
             [](record::RecorderService& s, const std::string& path, int sample_rate, bool stereo,
                std::size_t ring_frames) {
                 return s.start({path, sample_rate, stereo ? record::Layout::stereo : record::Layout::mono,
                                 ring_frames});
             })
        .def("close",
             [](record::RecorderService& s, const std::shared_ptr<record::Recording>& r) {
                 record::RecordingInfo info;
                 {
                     py::gil_scoped_release release;
                     info = s.close(r);
                 }
                 return recording_info_tuple(info);
             })
        .def("active", &record::RecorderService::active)
        .def("stop", &record::RecorderService::stop, py::call_guard<py::gil_scoped_release>());
    m.def("wav_to_mp3", &record::wav_to_mp3, py::call_guard<py::gil_scoped_release>());
}

}  // namespace callbox::bindings
