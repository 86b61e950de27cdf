#include "mixer/mixer.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

namespace callbox::mixer {

namespace {

// The limiter steers the loudest output of the tick to kTarget (about -0.9
// dBFS) with one gain for every output, so a listener moving between the
// common mix and an own mix never hears a level step. Gain falls within
// 1 ms (the frame is in hand, so the fall starts before the peak is played)
// and rises by about 0.5 dB per tick. What the 1 ms ramp lets through is
// bent by a rational soft knee that approaches, and never reaches, full
// scale: no wrap-around and no flat-topped clipping.
constexpr std::int32_t kUnityGainQ15 = 1 << 15;
constexpr std::int64_t kTarget = 29491;
constexpr std::int64_t kKnee = 32767 - kTarget;

std::int16_t soft_knee(std::int64_t sample) {
    const std::int64_t magnitude = sample < 0 ? -sample : sample;
    if (magnitude <= kTarget) return static_cast<std::int16_t>(sample);
    const std::int64_t excess = magnitude - kTarget;
    const std::int64_t bent = kTarget + excess * kKnee / (excess + kKnee);
    return static_cast<std::int16_t>(sample < 0 ? -bent : bent);
}

std::int32_t next_limiter_gain(std::int32_t gain, std::int64_t peak) {
    const std::int32_t wanted =
        peak > kTarget ? static_cast<std::int32_t>((kTarget << 15) / peak) : kUnityGainQ15;
    if (wanted < gain) return wanted;
    return std::min(wanted, gain + (gain >> 4) + 1);
}

std::int64_t peak_of(std::span<const std::int32_t> pcm) {
    std::int64_t peak = 0;
    for (const std::int32_t s : pcm) peak = std::max<std::int64_t>(peak, s < 0 ? -std::int64_t{s} : s);
    return peak;
}

std::invalid_argument no_participant(std::uint32_t id) {
    return std::invalid_argument("no participant " + std::to_string(id) + " in the mixer");
}

}  // namespace

Mixer::Mixer(const Config& config) : config_(config), limiter_gain_(kUnityGainQ15) {
    const std::uint32_t rate = config.sample_rate;
    if (rate != 8000 && rate != 16000 && rate != 32000 && rate != 48000) {
        throw std::invalid_argument("sample_rate must be 8000, 16000, 32000 or 48000: got " + std::to_string(rate));
    }
    if (config.talk_threshold < 0) throw std::invalid_argument("talk_threshold must not be negative");
    if (config.hangover_frames < 1) throw std::invalid_argument("hangover_frames must be at least 1");
    frame_samples_ = rate / 50;
    attack_samples_ = rate / 1000;
    total_.resize(frame_samples_);
    common_out_.resize(frame_samples_);
}

Mixer::Participant& Mixer::find(std::uint32_t id) {
    return const_cast<Participant&>(std::as_const(*this).find(id));
}

const Mixer::Participant& Mixer::find(std::uint32_t id) const {
    const auto it = std::find_if(participants_.begin(), participants_.end(),
                                 [id](const Participant& p) { return p.id == id; });
    if (it == participants_.end()) throw no_participant(id);
    return *it;
}

void Mixer::add(std::uint32_t id) {
    const bool known = std::any_of(participants_.begin(), participants_.end(),
                                   [id](const Participant& p) { return p.id == id; });
    if (known) throw std::invalid_argument("participant " + std::to_string(id) + " is already in the mixer");
    if (participants_.size() == kMaxParticipants) {
        throw std::invalid_argument("the mixer is full (" + std::to_string(kMaxParticipants) + " participants)");
    }
    Participant p{};
    p.id = id;
    p.frame.resize(frame_samples_);
    p.contribution.resize(frame_samples_);
    participants_.push_back(std::move(p));
}

void Mixer::remove(std::uint32_t id) {
    const Participant& gone = find(id);
    participants_.erase(participants_.begin() + (&gone - participants_.data()));
    // A later participant with the same id starts heard by everyone.
    for (Participant& p : participants_) std::erase(p.deaf_to, id);
}

void Mixer::set_gain(std::uint32_t id, std::int32_t gain_q12) {
    if (gain_q12 < 0 || gain_q12 > kMaxGainQ12) {
        throw std::invalid_argument("gain_q12 must be in 0.." + std::to_string(kMaxGainQ12) + ": got " +
                                    std::to_string(gain_q12));
    }
    find(id).gain_q12 = gain_q12;
}

void Mixer::set_muted(std::uint32_t id, bool muted) { find(id).muted = muted; }

void Mixer::set_hears(std::uint32_t listener, std::uint32_t talker, bool hears) {
    find(talker);
    Participant& l = find(listener);
    std::erase(l.deaf_to, talker);
    if (!hears) l.deaf_to.push_back(talker);
}

bool Mixer::hears(std::uint32_t listener, std::uint32_t talker) const {
    find(talker);
    const Participant& l = find(listener);
    return listener != talker && std::find(l.deaf_to.begin(), l.deaf_to.end(), talker) == l.deaf_to.end();
}

bool Mixer::talking(std::uint32_t id) const { return find(id).talking; }

std::vector<std::uint32_t> Mixer::participants() const {
    std::vector<std::uint32_t> ids;
    for (const Participant& p : participants_) ids.push_back(p.id);
    return ids;
}

void Mixer::put(std::uint32_t id, std::span<const std::int16_t> pcm) {
    if (pcm.size() != frame_samples_) {
        throw std::invalid_argument("a frame must be " + std::to_string(frame_samples_) + " samples: got " +
                                    std::to_string(pcm.size()));
    }
    Participant& p = find(id);
    std::copy(pcm.begin(), pcm.end(), p.frame.begin());
    p.has_frame = true;
}

// Energy of what the participant sent, before gain and mute, so a muted
// talker still shows as talking (the desktop can say "you are muted").
void Mixer::detect_talk(Participant& p) {
    std::int64_t energy = 0;
    if (p.has_frame) {
        for (const std::int16_t s : p.frame) energy += std::int64_t{s} * s;
    }
    const bool loud = energy > config_.talk_threshold * static_cast<std::int64_t>(frame_samples_);
    if (loud) {
        p.quiet_frames = 0;
        if (!p.talking) {
            p.talking = true;
            events_.push_back({p.id, true});
        }
    } else if (p.talking && ++p.quiet_frames >= config_.hangover_frames) {
        p.talking = false;
        events_.push_back({p.id, false});
    }
}

bool Mixer::excludes(const Participant& listener, const Participant& talker) const {
    return &listener == &talker ||
           std::find(listener.deaf_to.begin(), listener.deaf_to.end(), talker.id) != listener.deaf_to.end();
}

void Mixer::mix() {
    events_.clear();
    shared_.clear();
    contributors_.clear();
    std::fill(total_.begin(), total_.end(), 0);
    for (Participant& p : participants_) {
        detect_talk(p);
        if (!p.has_frame || p.muted) continue;
        contributors_.push_back(&p);
        for (std::size_t n = 0; n < frame_samples_; ++n) {
            p.contribution[n] = (std::int32_t{p.frame[n]} * p.gain_q12) >> 12;
            total_[n] += p.contribution[n];
        }
    }

    // Each listener's mix is the one sum less what it must not hear; a
    // listener who must not hear nobody in the sum shares the common mix.
    own_count_ = 0;
    for (const Participant& listener : participants_) {
        bool own = false;
        for (const Participant* talker : contributors_) {
            if (!excludes(listener, *talker)) continue;
            if (!own) {
                own = true;
                if (own_sums_.size() <= own_count_) own_sums_.emplace_back(frame_samples_);
                if (own_.size() <= own_count_) own_.push_back({0, std::vector<std::int16_t>(frame_samples_)});
                own_[own_count_].participant = listener.id;
                std::copy(total_.begin(), total_.end(), own_sums_[own_count_].begin());
            }
            std::vector<std::int32_t>& sum = own_sums_[own_count_];
            for (std::size_t n = 0; n < frame_samples_; ++n) sum[n] -= talker->contribution[n];
        }
        if (own) {
            ++own_count_;
        } else {
            shared_.push_back(listener.id);
        }
    }

    std::int64_t peak = peak_of(total_);
    for (std::size_t i = 0; i < own_count_; ++i) peak = std::max(peak, peak_of(own_sums_[i]));
    const std::int32_t next_gain = next_limiter_gain(limiter_gain_, peak);
    limit(total_, common_out_, next_gain);
    for (std::size_t i = 0; i < own_count_; ++i) limit(own_sums_[i], own_[i].pcm, next_gain);
    limiter_gain_ = next_gain;

    for (Participant& p : participants_) p.has_frame = false;
}

void Mixer::limit(std::span<const std::int32_t> in, std::span<std::int16_t> out, std::int32_t next_gain) const {
    const std::int64_t from = limiter_gain_;
    const std::int64_t to = next_gain;
    for (std::size_t n = 0; n < frame_samples_; ++n) {
        const auto step = static_cast<std::int64_t>(n + 1);
        std::int64_t gain = to;
        if (to < from && n < attack_samples_) {
            gain = from - (from - to) * step / static_cast<std::int64_t>(attack_samples_);
        } else if (to > from) {
            gain = from + (to - from) * step / static_cast<std::int64_t>(frame_samples_);
        }
        out[n] = soft_knee((in[n] * gain) >> 15);
    }
}

}  // namespace callbox::mixer
