// A media worker: one thread with its own epoll set and an absolute-time 20 ms
// timerfd tick. The legs on a worker are touched only by its thread, so the
// packet path takes no locks; commands from other threads wait in a short
// mutex-protected queue and wake the thread (an eventfd), which applies them
// at once between packets and ticks, not only at the next 20 ms tick.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/conference.h"
#include "engine/io.h"
#include "engine/leg.h"
#include "engine/media.h"
#include "record/recorder.h"

namespace callbox::engine {

class EventQueue;

// A recording fed from two legs' received audio on the worker's tick.
struct RecordingTap {
    std::shared_ptr<record::Recording> recording;
    LegId left = 0;
    LegId right = 0;
};

class Worker final : public LegHost {
public:
    static constexpr std::chrono::milliseconds kTick{20};
    static constexpr std::uint64_t kMaxCatchUp = 5;  // frames made up after a late wake-up
    static constexpr int kMaxTailFrames = 30;        // a stopped recording's held audio: 600 ms at most
    using Command = std::function<void(Worker&, Clock::time_point)>;

    explicit Worker(EventQueue& events);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // Queues a command and wakes the worker to apply it; throws std::runtime_error once stopped.
    void post(Command command);
    // Applies the remaining commands, then ends the thread.
    void stop();

    // For commands, on the worker thread.
    void add_leg(std::unique_ptr<Leg> leg);
    Leg& leg(LegId id);
    void remove_leg(LegId id);
    // The leg, or nullptr if it is gone.
    Leg* find_leg(LegId id);
    void add_tap(std::uint64_t id, RecordingTap tap);
    // Stops feeding a recording, after what its legs' buffers still hold.
    void remove_tap(std::uint64_t id, Clock::time_point now);
    void add_conference(std::unique_ptr<Conference> conference);
    Conference& conference(ConferenceId id);
    void remove_conference(ConferenceId id);

    Outbox& outbox() override { return *outbox_; }
    Inbox& inbox() override { return *inbox_; }
    void post_event(Event event) override;

private:
    void run();
    // The worker's loop with epoll and a recvmmsg per readable socket (no io_uring).
    void run_on_epoll();
    // The worker's loop on its ReceiveRing: every socket's datagrams from one wait.
    void run_on_ring();
    // Hands a wait's datagrams to their legs (relays send at once) and notes
    // timer expirations and wake-ups in due_frames_ and woken_.
    void take(std::span<const ReceiveRing::Completion> done, Clock::time_point now);
    // Called for each leg and recording the tick walks: every kRelayEvery of
    // them, takes what the ring has received meanwhile and sends its relays,
    // so that a relayed packet waits for part of a tick, not a whole one.
    void relay_during_tick();
    // After a wake-up's datagrams: sends, commands, and the tick's audio if `frames`.
    void finish_wake(Clock::time_point now, std::uint64_t frames, bool woken);
    void wake();
    // Runs the queued commands on the worker thread.
    void apply_commands(Clock::time_point now);
    // Timers, then `frames` 20 ms frames of audio (the timer's expirations).
    void tick(Clock::time_point now, std::uint64_t frames);
    // Each recording takes its two legs' audio of `frame` and records it at
    // once, while the audio is still in the cache.
    void record_tick(Clock::time_point now, std::uint64_t frame);
    // Runs `work` on `leg`; an exception becomes an error event.
    template <class Work>
    void guarded(Leg& leg, Work work);
    // guarded() on every leg.
    template <class Work>
    void for_each_leg(Work work);

    struct ActiveTap {
        std::uint64_t id;
        std::shared_ptr<record::Recording> recording;
        // The two legs, looked up once; a side whose leg closes becomes nullptr and records silence.
        Leg* left = nullptr;
        Leg* right = nullptr;
        RateConverter left_rate;  // each side's audio to the recording's rate
        RateConverter right_rate;
        std::vector<std::int16_t> silence;

        // One frame of each side's audio into the recording, at its rate.
        void push(std::span<const std::int16_t> left_audio, std::span<const std::int16_t> right_audio);
    };
    // A stopping recording takes what its legs' buffers still hold.
    void flush_tap(ActiveTap& active, Clock::time_point now);

    EventQueue& events_;
    int epoll_fd_ = -1;
    int timer_fd_ = -1;
    int wake_fd_ = -1;
    std::unique_ptr<Inbox> inbox_ = std::make_unique<Inbox>();
    std::unique_ptr<Outbox> outbox_ = std::make_unique<Outbox>();
    std::unordered_map<LegId, std::unique_ptr<Leg>> legs_;
    // The same legs in one flat array: the tick walks every leg several times
    // each 20 ms, and a vector is cheaper to walk than the map's nodes.
    std::vector<Leg*> ticking_;
    // What a leg's socket is to epoll: its event carries a pointer to its
    // entry here (map nodes keep their address), so a readable socket finds
    // its leg without a lookup.
    // On a ReceiveRing, a removed leg's watch lives on (leg nullptr) in
    // retired_ until the ring's last completion for it.
    struct Watch {
        Leg* leg;
        int fd;
    };
    std::unordered_map<int, std::unique_ptr<Watch>> by_fd_;
    std::vector<std::unique_ptr<Watch>> retired_;
    ReceiveRing receiving_;
    // Seen by take() during a tick, acted on once the tick is done.
    std::uint64_t due_frames_ = 0;
    bool woken_ = false;
    int since_relay_ = 0;  // legs and recordings walked since relay_during_tick() last looked
    std::vector<ActiveTap> taps_;  // walked every frame, found by id only when one stops
    std::uint64_t frame_ = 0;       // frames made so far
    std::unordered_map<ConferenceId, std::unique_ptr<Conference>> conferences_;

    std::mutex mutex_;
    std::vector<Command> pending_;
    std::vector<Command> applying_;  // the worker's batch, swapped out of pending_
    bool accepting_ = true;
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

}  // namespace callbox::engine
