// The private extension module behind ``import core``: a thin pybind11 layer.
// Each area binds itself (see bindings.h); the public surface, docstrings and
// types are in core/__init__.py and core/_core.pyi.
#include <pybind11/pybind11.h>

#include <lame/lame.h>
#include <opus/opus.h>
#include <spandsp/version.h>
#include <srtp2/srtp.h>

#include <string>

#include "bindings.h"

namespace py = pybind11;

namespace {

py::dict library_versions() {
    py::dict versions;
    versions["opus"] = opus_get_version_string();
    versions["lame"] = std::string(get_lame_version());
    versions["libsrtp2"] = srtp_get_version_string();
    // spandsp and bcg729 have no runtime version call: report what we built against.
    versions["spandsp"] = CALLBOX_PKG_SPANDSP_VERSION " (" SPANDSP_RELEASE_DATETIME_STRING ")";
    versions["bcg729"] = CALLBOX_PKG_LIBBCG729_VERSION;
    return versions;
}

}  // namespace

PYBIND11_MODULE(CALLBOX_CORE_MODULE, m) {
    m.doc() = "Callbox media core (private; use the public 'core' package).";
    callbox::bindings::bind_codec(m);
    callbox::bindings::bind_rtp(m);
    callbox::bindings::bind_engine(m);
    callbox::bindings::bind_jitter(m);
    callbox::bindings::bind_record(m);
    callbox::bindings::bind_mixer(m);
    callbox::bindings::bind_player(m);
    m.def("library_versions", &library_versions);
}
