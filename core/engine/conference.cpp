#include "engine/conference.h"

#include <algorithm>
#include <stdexcept>

#include "engine/worker.h"

namespace callbox::engine {

namespace {

mixer::Config mix_config(int sample_rate) {
    if (sample_rate != 8000 && sample_rate != 16000) {
        throw std::invalid_argument("a conference mixes at 8000 or 16000 Hz: got " + std::to_string(sample_rate));
    }
    mixer::Config config;
    config.sample_rate = static_cast<std::uint32_t>(sample_rate);
    return config;
}

// Codecs whose encoder keeps no state between frames: one encode serves any
// number of listeners, whatever each heard before.
bool stateless(const std::string& codec) {
    const std::string name = lower_case(codec);
    return name == "pcmu" || name == "pcma";
}

}  // namespace

Conference::Conference(ConferenceId id, int sample_rate)
    : id_(id), sample_rate_(sample_rate), mixer_(mix_config(sample_rate)) {}

std::map<std::uint32_t, Conference::Member>::iterator Conference::member_of(LegId leg) {
    return std::find_if(members_.begin(), members_.end(), [leg](const auto& m) { return m.second.leg == leg; });
}

std::uint32_t Conference::participant(LegId leg) {
    const auto it = member_of(leg);
    if (it == members_.end()) {
        throw std::invalid_argument("leg " + std::to_string(leg) + " is not in conference " + std::to_string(id_));
    }
    return it->first;
}

LegId Conference::leg_of(std::uint32_t participant) const {
    const auto it = members_.find(participant);
    return it == members_.end() ? 0 : it->second.leg;
}

void Conference::add(Leg& leg) {
    if (member_of(leg.id()) != members_.end()) {
        throw std::invalid_argument("leg " + std::to_string(leg.id()) + " is in conference " + std::to_string(id_) +
                                    " already");
    }
    SharedEncode* shared = nullptr;
    if (stateless(leg.codec().name)) {
        shared = &shared_encoders_[lower_case(leg.codec().name)];
        if (!shared->encoder) shared->encoder = std::make_unique<SendPath>(leg.codec().name, codec::FmtpParams{});
    }
    const std::uint32_t p = next_participant_++;
    mixer_.add(p);
    members_.emplace(p, Member{leg.id(), RateConverter(sample_rate_), shared});
    leg.add_audio_user();
    leg.set_conference(this);
}

void Conference::remove(LegId leg, Leg* still_open) {
    const auto it = member_of(leg);
    if (it == members_.end()) return;
    mixer_.remove(it->first);
    members_.erase(it);
    if (still_open != nullptr) {
        still_open->remove_audio_user();
        still_open->set_conference(nullptr);
    }
}

void Conference::set_gain(LegId leg, std::int32_t gain_q12) { mixer_.set_gain(participant(leg), gain_q12); }

void Conference::set_muted(LegId leg, bool muted) { mixer_.set_muted(participant(leg), muted); }

void Conference::set_hears(LegId listener, LegId talker, bool hears) {
    mixer_.set_hears(participant(listener), participant(talker), hears);
}

std::vector<LegId> Conference::members() const {
    std::vector<LegId> out;
    for (const auto& [participant, member] : members_) out.push_back(member.leg);
    return out;
}

void Conference::tick(Worker& worker) {
    for (auto& [participant, member] : members_) {
        const Leg* leg = worker.find_leg(member.leg);
        if (leg == nullptr || leg->received_audio().empty()) continue;  // silent this tick
        mixer_.put(participant, member.to_mix.convert(leg->received_audio(), leg->received_rate()));
    }
    mixer_.mix();
    for (auto& [codec, shared] : shared_encoders_) shared.payload = nullptr;
    for (const std::uint32_t p : mixer_.shared()) {
        const auto member = members_.find(p);
        Leg* leg = member == members_.end() ? nullptr : worker.find_leg(member->second.leg);
        if (leg == nullptr) continue;
        SharedEncode* shared = member->second.shared;
        if (shared == nullptr) {
            leg->feed_mix(mixer_.common(), sample_rate_);
            continue;
        }
        if (shared->payload == nullptr) shared->payload = &shared->encoder->encode(mixer_.common(), sample_rate_);
        leg->feed_encoded(*shared->payload);
    }
    for (const mixer::OwnMix& own : mixer_.own()) {
        if (Leg* leg = worker.find_leg(leg_of(own.participant))) leg->feed_mix(own.pcm, sample_rate_);
    }
    for (const mixer::TalkEvent& talk : mixer_.events()) {
        worker.post_event({talk.talking ? "talk_start" : "talk_stop", leg_of(talk.participant), std::to_string(id_)});
    }
}

}  // namespace callbox::engine
