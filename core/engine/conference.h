// A conference on a worker's tick: each member leg's decoded audio goes into
// an N-1 mixer (core/mixer), and each member is fed what it hears. Listeners
// who hear the whole conference share one encode per codec where the codec
// keeps no state between frames (G.711); the others are encoded by their own
// leg, since a stateful encoder (G.722, G.729, Opus) must not switch streams.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/leg.h"
#include "engine/media.h"
#include "mixer/mixer.h"

namespace callbox::engine {

using ConferenceId = std::uint64_t;
class Worker;

class Conference {
public:
    // sample_rate: the mix's, 8000 or 16000 (std::invalid_argument otherwise).
    Conference(ConferenceId id, int sample_rate);

    ConferenceId id() const { return id_; }
    void add(Leg& leg);
    // Takes the leg out (if it is in); `leg` may be gone already.
    void remove(LegId leg, Leg* still_open);
    void set_gain(LegId leg, std::int32_t gain_q12);
    void set_muted(LegId leg, bool muted);
    void set_hears(LegId listener, LegId talker, bool hears);
    std::vector<LegId> members() const;

    // The tick, after every leg took its received audio and before any sends:
    // mixes, feeds each member what it hears, reports talkers.
    void tick(Worker& worker);

private:
    struct SharedEncode {
        std::unique_ptr<SendPath> encoder;
        const codec::Payload* payload = nullptr;  // this tick's, once encoded
    };
    struct Member {
        LegId leg;
        RateConverter to_mix;  // the leg's audio to the mix's rate
        SharedEncode* shared;  // its codec's shared encode; null for a stateful codec
    };
    // The member of `leg`, or members_.end() if it is not in.
    std::map<std::uint32_t, Member>::iterator member_of(LegId leg);
    // The mixer's participant for `leg`; std::invalid_argument if it is not in.
    std::uint32_t participant(LegId leg);
    LegId leg_of(std::uint32_t participant) const;

    ConferenceId id_;
    int sample_rate_;
    mixer::Mixer mixer_;
    // By mixer participant, so the tick finds a listener's leg without a search;
    // control calls (by leg, on a few members) search instead.
    std::map<std::uint32_t, Member> members_;
    std::uint32_t next_participant_ = 1;
    std::map<std::string, SharedEncode> shared_encoders_;  // by codec (lower case), for stateless ones
};

}  // namespace callbox::engine
