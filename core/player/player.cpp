#include "player/player.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "codec/telephone_event.h"

namespace callbox::player {

Player::Player(const std::vector<PlaylistItem>& playlist, unsigned sample_rate, bool loop,
               std::string_view barge_in)
    : sample_rate_(sample_rate), loop_(loop) {
    if (sample_rate != 8000 && sample_rate != 16000 && sample_rate != 48000) {
        throw std::invalid_argument("player output rate " + std::to_string(sample_rate) +
                                    " Hz: expected 8000, 16000 or 48000");
    }
    if (playlist.empty()) throw std::invalid_argument("a player needs at least one prompt or silence");
    for (const char digit : barge_in) {
        codec::dtmf_event(digit);  // refuses a non-digit by name
        barge_in_[static_cast<unsigned char>(digit)] = true;
    }
    std::size_t total = 0;
    segments_.reserve(playlist.size());
    for (const auto& item : playlist) {
        if (item.prompt) {
            auto audio = item.prompt->at_rate(sample_rate);
            const std::size_t samples = audio->pcm().size();
            segments_.push_back({std::move(audio), samples});
        } else {
            segments_.push_back({nullptr, static_cast<std::size_t>(item.silence_ms) * sample_rate / 1000});
        }
        total += segments_.back().samples;
    }
    if (loop && total == 0) throw std::invalid_argument("a looping playlist must last longer than 0 ms");
    skip_empty_segments();
}

void Player::skip_empty_segments() {
    while (position_.item < segments_.size() && segments_[position_.item].samples == 0) ++position_.item;
}

bool Player::next(std::span<std::int16_t> out) {
    if (end_) return false;
    if (position_.item == segments_.size() && !loop_) {
        end_ = engine::SourceEnd{"finished", ""};
        return false;
    }
    std::size_t filled = 0;
    while (filled < out.size()) {
        if (position_.item == segments_.size()) {
            if (!loop_) {
                std::fill(out.begin() + static_cast<std::ptrdiff_t>(filled), out.end(), 0);
                break;
            }
            position_.item = 0;
            ++position_.loops;
            skip_empty_segments();
        }
        const Segment& segment = segments_[position_.item];
        const std::size_t n = std::min(segment.samples - position_.offset_samples, out.size() - filled);
        const auto dst = out.subspan(filled, n);
        if (segment.audio) {
            const auto src = segment.audio->pcm().subspan(position_.offset_samples, n);
            std::copy(src.begin(), src.end(), dst.begin());
        } else {
            std::fill(dst.begin(), dst.end(), 0);
        }
        filled += n;
        position_.offset_samples += n;
        if (position_.offset_samples == segment.samples) {
            ++position_.item;
            position_.offset_samples = 0;
            skip_empty_segments();
        }
    }
    position_.played_samples += out.size();
    return true;
}

bool Player::on_digit(char digit) {
    const auto code = static_cast<unsigned char>(digit);
    if (end_ || code >= barge_in_.size() || !barge_in_[code]) return false;
    end_ = engine::SourceEnd{"digit", std::string(1, digit)};
    return true;
}

engine::SourceEnd Player::end() const { return end_.value_or(engine::SourceEnd{}); }

void Player::stop() {
    if (!end_) end_ = engine::SourceEnd{"stopped", ""};
}

}  // namespace callbox::player
