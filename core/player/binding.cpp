// Python bindings of the prompt player (core/player/). Loading and decoding a
// prompt and making a player (which resamples) release the GIL; a frame is a
// copy out of shared PCM, cheaper than releasing the GIL for it.
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "bindings.h"
#include "player/player.h"
#include "player/prompt.h"
#include "pybuffer.h"

namespace py = pybind11;
namespace player = callbox::player;

namespace {

// pybind11 holds Prompts as shared_ptr<Prompt>; the C++ side hands out
// shared_ptr<const Prompt>. Python can only read a Prompt, so this is safe.
std::shared_ptr<player::Prompt> held(std::shared_ptr<const player::Prompt> prompt) {
    return std::const_pointer_cast<player::Prompt>(std::move(prompt));
}

std::shared_ptr<player::Prompt> decode_prompt(const py::object& data, const std::string& name) {
    const callbox::ByteView view(data);
    std::shared_ptr<const player::Prompt> prompt;
    {
        py::gil_scoped_release release;
        prompt = player::Prompt::decode(name, {view.data(), view.size()});
    }
    return held(std::move(prompt));
}

py::bytes prompt_pcm(const player::Prompt& prompt) {
    const auto pcm = prompt.pcm();
    return py::bytes(reinterpret_cast<const char*>(pcm.data()), static_cast<py::ssize_t>(pcm.size_bytes()));
}

py::object next_frame(player::Player& p) {
    const auto samples = static_cast<py::ssize_t>(p.sample_rate() / 50);
    py::bytes frame(nullptr, samples * 2);
    auto* out = reinterpret_cast<std::int16_t*>(PyBytes_AS_STRING(frame.ptr()));
    if (!p.next({out, static_cast<std::size_t>(samples)})) return py::none();
    return frame;
}

py::tuple cache_info() {
    const auto info = player::PromptCache::shared().info();
    return py::make_tuple(info.prompts, info.bytes, info.max_bytes, info.hits, info.misses, info.evictions);
}

}  // namespace

namespace callbox::bindings {

std::unique_ptr<player::Player> make_player(const PlaylistItems& items, unsigned rate, bool loop,
                                            const std::string& barge_in) {
    std::vector<player::PlaylistItem> playlist;
    playlist.reserve(items.size());
    for (const auto& [prompt, silence_ms] : items) playlist.push_back({prompt, silence_ms});
    py::gil_scoped_release release;
    return std::make_unique<player::Player>(playlist, rate, loop, barge_in);
}

void bind_player(py::module_& m) {
    py::register_exception<player::PromptError>(m, "PromptError", PyExc_ValueError);
    py::class_<player::Prompt, std::shared_ptr<player::Prompt>>(m, "Prompt")
        .def_static("load",
                    [](const std::string& path) {
                        std::shared_ptr<const player::Prompt> prompt;
                        {
                            py::gil_scoped_release release;
                            prompt = player::PromptCache::shared().load(path);
                        }
                        return held(std::move(prompt));
                    })
        .def_static("decode", &decode_prompt)
        .def_property_readonly("name", &player::Prompt::name)
        .def_property_readonly("sample_rate", &player::Prompt::sample_rate)
        .def_property_readonly("encoding",
                               [](const player::Prompt& p) { return player::encoding_name(p.encoding()); })
        .def_property_readonly("truncated", &player::Prompt::truncated)
        .def_property_readonly("samples", [](const player::Prompt& p) { return p.pcm().size(); })
        .def("pcm", &prompt_pcm);
    m.def("prompt_cache_info", &cache_info);
    m.def("set_prompt_cache_limit",
          [](std::size_t max_bytes) { player::PromptCache::shared().set_max_bytes(max_bytes); });
    py::class_<player::Player>(m, "Player")
        .def(py::init(&make_player))
        .def("sample_rate", &player::Player::sample_rate)
        .def("next_frame", &next_frame)
        .def("on_digit", &player::Player::on_digit)
        .def("stop", &player::Player::stop)
        .def("end",
             [](const player::Player& p) -> py::object {
                 if (!p.ended()) return py::none();
                 const auto end = p.end();
                 return py::make_tuple(end.reason, end.detail);
             })
        .def("position", [](const player::Player& p) {
            const auto at = p.position();
            return py::make_tuple(at.item, at.offset_samples, at.played_samples, at.loops);
        });
}

}  // namespace callbox::bindings
