#include "codec/dtmf.h"

#include <algorithm>
#include <utility>

#include "codec/telephone_event.h"

namespace callbox::codec {

DtmfDetector::DtmfDetector(int twist, int reverse_twist, int min_level_dbm0)
    : state_(spandsp_owned<dtmf_rx_state_t, dtmf_rx_free>(
          dtmf_rx_init(nullptr, &DtmfDetector::on_digits, this))) {
    if (twist < 0 || reverse_twist < 0 || min_level_dbm0 > 0 || min_level_dbm0 < -60) {
        throw CodecError("DTMF detector: twists must be >= 0 dB and the minimum level from "
                         "-60 to 0 dBm0");
    }
    // No dial-tone filter: callers reach us without a dial tone on the line.
    dtmf_rx_parms(state_.get(), 0, twist, reverse_twist, min_level_dbm0);
}

void DtmfDetector::on_digits(void* self, const char* digits, int len) {
    static_cast<DtmfDetector*>(self)->found_.append(digits, static_cast<std::size_t>(len));
}

std::string DtmfDetector::process(std::span<const std::int16_t> pcm) {
    dtmf_rx(state_.get(), pcm.data(), static_cast<int>(pcm.size()));
    return std::exchange(found_, {});
}

void DtmfDetector::skip(std::size_t samples) {
    dtmf_rx_fillin(state_.get(), static_cast<int>(samples));
}

DtmfGenerator::DtmfGenerator(int level_dbm0, int twist, int on_ms, int off_ms)
    : state_(spandsp_owned<dtmf_tx_state_t, dtmf_tx_free>(dtmf_tx_init(nullptr))) {
    if (level_dbm0 > 0 || level_dbm0 < -60 || on_ms <= 0 || off_ms < 0) {
        throw CodecError("DTMF generator: level must be from -60 to 0 dBm0, tone duration "
                         "positive and pause not negative");
    }
    dtmf_tx_set_level(state_.get(), level_dbm0, twist);
    dtmf_tx_set_timing(state_.get(), on_ms, off_ms);
    digit_samples_ = static_cast<std::size_t>(on_ms + off_ms) * 8;
}

void DtmfGenerator::queue(std::string_view digits) {
    for (const char digit : digits) dtmf_event(digit);  // refuses non-digits by name
    const std::string text(digits);
    if (dtmf_tx_put(state_.get(), text.c_str(), static_cast<int>(text.size())) != 0) {
        throw CodecError("DTMF generator queue is full");
    }
    pending_ += digits.size() * digit_samples_;
}

Pcm DtmfGenerator::generate(std::size_t samples) {
    Pcm pcm(samples);
    std::size_t done = 0;
    while (done < samples) {
        const int n = dtmf_tx(state_.get(), pcm.data() + done, static_cast<int>(samples - done));
        if (n <= 0) break;  // queue empty: the rest stays silent
        done += static_cast<std::size_t>(n);
    }
    pending_ = done < samples ? 0 : pending_ - std::min(pending_, done);
    return pcm;
}

}  // namespace callbox::codec
