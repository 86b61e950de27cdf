// Each area of the core registers its Python bindings from its own file;
// core/binding.cpp only creates the module and calls these in order.
#pragma once

#include <pybind11/pybind11.h>

#include "jitter/jitter.h"
#include "record/recorder.h"

namespace callbox::bindings {

void bind_codec(pybind11::module_& m);    // core/codec/binding.cpp
void bind_rtp(pybind11::module_& m);      // core/rtp/binding.cpp
void bind_engine(pybind11::module_& m);   // core/engine/binding.cpp
void bind_jitter(pybind11::module_& m);   // core/jitter/binding.cpp
void bind_record(pybind11::module_& m);   // core/record/binding.cpp
void bind_mixer(pybind11::module_& m);    // core/mixer/binding.cpp
void bind_player(pybind11::module_& m);   // core/player/binding.cpp

// Shared between areas: the tuples core/_jitter.py and core/_record.py name.
pybind11::tuple jitter_stats_tuple(const jitter::Stats& s);     // core/jitter/binding.cpp
pybind11::tuple recording_info_tuple(const record::RecordingInfo& i);  // core/record/binding.cpp

}  // namespace callbox::bindings
