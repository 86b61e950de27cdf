// Each area of the core registers its Python bindings from its own file;
// core/binding.cpp only creates the module and calls these in order.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "jitter/jitter.h"
#include "player/player.h"
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

// A playlist as it crosses from core/_player.py: (prompt or None, silence_ms) pairs.
using PlaylistItems = std::vector<std::pair<std::shared_ptr<player::Prompt>, unsigned>>;
// A player of the playlist at `rate`, made (its prompts resampled) without the
// GIL; the prompts are shared, not copied. In core/player/binding.cpp.
std::unique_ptr<player::Player> make_player(const PlaylistItems& items, unsigned rate, bool loop,
                                            const std::string& barge_in);

}  // namespace callbox::bindings
