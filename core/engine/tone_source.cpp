#include "engine/tone_source.h"

#include <algorithm>

namespace callbox::engine {

ToneSource::ToneSource(const codec::ToneSpec& spec, int duration_ms, bool barge_in)
    : generator_(spec), barge_in_(barge_in) {
    if (duration_ms > 0) remaining_ = static_cast<std::size_t>(duration_ms) * 8;
}

bool ToneSource::next(std::span<std::int16_t> out) {
    if (digit_ || (remaining_ && *remaining_ == 0)) return false;
    const codec::Pcm tone = generator_.generate(out.size());
    std::copy(tone.begin(), tone.end(), out.begin());
    if (remaining_) *remaining_ -= std::min(*remaining_, out.size());
    return true;
}

bool ToneSource::on_digit(char digit) {
    if (!barge_in_ || digit_) return false;
    digit_ = digit;
    return true;
}

SourceEnd ToneSource::end() const {
    if (digit_) return {"digit", std::string(1, *digit_)};
    return {"finished", {}};
}

}  // namespace callbox::engine
