#include "engine/worker.h"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "engine/events.h"

namespace callbox::engine {

namespace {

void check(int result, const char* what) {
    if (result < 0) throw std::runtime_error(std::string(what) + ": " + std::strerror(errno));
}

void watch(int epoll_fd, int fd, void* tag) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.ptr = tag;
    check(epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event), "epoll_ctl(ADD)");
}

}  // namespace

Worker::Worker(EventQueue& events) : events_(events) {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    check(epoll_fd_, "epoll_create1");
    timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    check(timer_fd_, "timerfd_create");
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    check(wake_fd_, "eventfd");
    // Absolute deadlines on the monotonic clock: ticks stay on a 20 ms grid
    // however long one tick's work takes, instead of drifting with it.
    timespec start{};
    clock_gettime(CLOCK_MONOTONIC, &start);
    itimerspec spec{};
    spec.it_interval.tv_nsec = std::chrono::nanoseconds(kTick).count();
    spec.it_value = start;
    spec.it_value.tv_nsec += spec.it_interval.tv_nsec;
    if (spec.it_value.tv_nsec >= 1'000'000'000) {
        spec.it_value.tv_sec += 1;
        spec.it_value.tv_nsec -= 1'000'000'000;
    }
    check(timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr), "timerfd_settime");
    watch(epoll_fd_, timer_fd_, &timer_fd_);
    watch(epoll_fd_, wake_fd_, &wake_fd_);
    thread_ = std::thread([this] { run(); });
}

Worker::~Worker() {
    stop();
    ticking_.clear();
    legs_.clear();
    close(epoll_fd_);
    close(timer_fd_);
    close(wake_fd_);
}

void Worker::post(Command command) {
    bool first = false;
    {
        std::lock_guard lock(mutex_);
        if (!accepting_) throw std::runtime_error("the media engine is closed");
        first = pending_.empty();
        pending_.push_back(std::move(command));
    }
    // Wakes the worker so the command applies now, not at the next tick. One
    // write per batch: commands posted before the worker drains the queue
    // ride on the same wake-up.
    if (first) wake();
}

void Worker::wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto written = write(wake_fd_, &one, sizeof one);
}

void Worker::stop() {
    {
        std::lock_guard lock(mutex_);
        accepting_ = false;
    }
    if (!thread_.joinable()) return;
    stopping_ = true;
    wake();
    thread_.join();
}

void Worker::add_leg(std::unique_ptr<Leg> leg) {
    leg->attach(*this);
    for (int fd : leg->fds()) {
        Watch* entry = (by_fd_[fd] = std::make_unique<Watch>(Watch{leg.get(), fd})).get();
        outbox_->add_socket(fd);
        if (receiving_.available()) {
            receiving_.receive(fd, entry);
        } else {
            watch(epoll_fd_, fd, entry);
        }
    }
    const LegId id = leg->id();
    ticking_.push_back(leg.get());
    legs_.emplace(id, std::move(leg));
}

Leg& Worker::leg(LegId id) {
    const auto it = legs_.find(id);
    if (it == legs_.end()) throw std::invalid_argument("no leg " + std::to_string(id) + " in this engine");
    return *it->second;
}

Leg* Worker::find_leg(LegId id) {
    const auto it = legs_.find(id);
    return it == legs_.end() ? nullptr : it->second.get();
}

void Worker::add_tap(std::uint64_t id, RecordingTap tap) {
    const int rate = static_cast<int>(tap.recording->frame_samples()) * 1000 / record::kFrameMs;
    Leg& left = leg(tap.left);  // both looked up before either is touched
    Leg& right = leg(tap.right);
    left.add_recorder();
    right.add_recorder();
    const std::size_t samples = tap.recording->frame_samples();
    taps_.push_back(ActiveTap{id, std::move(tap.recording), &left, &right, RateConverter(rate), RateConverter(rate),
                              std::vector<std::int16_t>(samples, 0)});
}

void Worker::ActiveTap::push(std::span<const std::int16_t> left_audio, std::span<const std::int16_t> right_audio) {
    // A side with no audio (buffering, or its leg closed) records silence.
    const auto side = [&](const Leg* leg, std::span<const std::int16_t> audio, RateConverter& rate) {
        return audio.empty() ? silence.data() : rate.convert(audio, leg->received_rate()).data();
    };
    recording->push(side(left, left_audio, left_rate), side(right, right_audio, right_rate));
}

void Worker::flush_tap(ActiveTap& active, Clock::time_point now) {
    // A side shared with another recording keeps its audio for that one.
    const auto held = [&](Leg* side) {
        std::span<const std::int16_t> audio;
        if (side != nullptr && side->recorders() == 1) guarded(*side, [&](Leg& leg) { audio = leg.drain_held(now); });
        return audio;
    };
    for (int frame = 0; frame < kMaxTailFrames; ++frame) {
        const std::span<const std::int16_t> left = held(active.left);
        const std::span<const std::int16_t> right = held(active.right);
        if (left.empty() && right.empty()) return;
        active.push(left, right);
    }
}

void Worker::remove_tap(std::uint64_t id, Clock::time_point now) {
    const auto it = std::find_if(taps_.begin(), taps_.end(), [id](const ActiveTap& t) { return t.id == id; });
    if (it == taps_.end()) return;
    flush_tap(*it, now);
    for (Leg* side : {it->left, it->right}) {
        if (side != nullptr) side->remove_recorder();
    }
    taps_.erase(it);
}

void Worker::add_conference(std::unique_ptr<Conference> conference) {
    const ConferenceId id = conference->id();
    conferences_.emplace(id, std::move(conference));
}

Conference& Worker::conference(ConferenceId id) {
    const auto it = conferences_.find(id);
    if (it == conferences_.end()) {
        throw std::invalid_argument("no conference " + std::to_string(id) + " in this engine (closed already?)");
    }
    return *it->second;
}

void Worker::remove_conference(ConferenceId id) {
    Conference& gone = conference(id);
    for (const LegId member : gone.members()) gone.remove(member, find_leg(member));
    conferences_.erase(id);
}

void Worker::record_tick(Clock::time_point now, std::uint64_t frame) {
    for (ActiveTap& active : taps_) {
        relay_during_tick();
        for (Leg* side : {active.left, active.right}) {
            if (side != nullptr) guarded(*side, [&](Leg& leg) { leg.pull_audio(now, frame); });
        }
        const auto audio = [](const Leg* side) {
            return side != nullptr ? side->received_audio() : std::span<const std::int16_t>{};
        };
        active.push(audio(active.left), audio(active.right));
    }
}

void Worker::remove_leg(LegId id) {
    Leg& gone = leg(id);
    if (Leg* peer = gone.bridged()) peer->set_bridged(nullptr);
    if (Conference* conference = gone.conference()) conference->remove(id, nullptr);
    for (ActiveTap& active : taps_) {
        for (Leg** side : {&active.left, &active.right}) {
            if (*side == &gone) *side = nullptr;  // the side records silence from now on
        }
    }
    for (int fd : gone.fds()) {
        auto entry = by_fd_.extract(fd);
        outbox_->remove_socket(fd);
        if (receiving_.available()) {
            // The ring may still hold datagrams for it: they find no leg.
            entry.mapped()->leg = nullptr;
            receiving_.cancel(fd, entry.mapped().get());
            retired_.push_back(std::move(entry.mapped()));
        } else {
            epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
        }
    }
    std::erase(ticking_, &gone);
    legs_.erase(id);
}

void Worker::post_event(Event event) { events_.push(std::move(event)); }

template <class Work>
void Worker::guarded(Leg& leg, Work work) {
    // A fault in one leg's audio (a codec refusing what it was given) must
    // not take the worker, and every other call on it, down with it.
    try {
        work(leg);
    } catch (const std::exception& error) {
        post_event({"error", leg.id(), error.what()});
    }
}

template <class Work>
void Worker::for_each_leg(Work work) {
    // A relay during the walk sends and may post events; it never adds or removes a leg.
    for (Leg* leg : ticking_) {
        relay_during_tick();
        guarded(*leg, work);
    }
}

void Worker::relay_during_tick() {
    // At 1,000 calls a tick walks 2,000 legs and 1,000 recordings in 2-4 ms, as
    // long as the relays of 300 packets take; packets arriving meanwhile used
    // to wait for all of it, then for the queue it left behind.
    constexpr int kRelayEvery = 128;
    if (!receiving_.available() || ++since_relay_ < kRelayEvery) return;
    since_relay_ = 0;
    const auto done = receiving_.wait(false);
    if (done.empty()) return;
    take(done, Clock::now());
    outbox_->flush();
}

void Worker::apply_commands(Clock::time_point now) {
    {
        std::lock_guard lock(mutex_);
        applying_.swap(pending_);
    }
    for (Command& command : applying_) command(*this, now);
    // Cleared outside the lock; the vector keeps its capacity for the next batch.
    applying_.clear();
}

void Worker::tick(Clock::time_point now, std::uint64_t frames) {
    for (Leg* leg : ticking_) leg->on_tick(now);
    // A late wake-up (a busy machine) makes up the frames it missed, so
    // recordings keep the call's length and far ends still get 50 packets a
    // second; beyond kMaxCatchUp the lost time is given up.
    for (std::uint64_t frame = 0; frame < std::min(frames, kMaxCatchUp); ++frame) {
        // Every leg takes this frame's audio before any sends, so a transcoding
        // bridge or a recording sees both sides of the same frame.
        ++frame_;
        record_tick(now, frame_);
        for_each_leg([&](Leg& leg) { leg.pull_audio(now, frame_); });
        for (auto& [id, conference] : conferences_) conference->tick(*this);
        for_each_leg([&](Leg& leg) { leg.send_audio(now); });
    }
    for_each_leg([&](Leg& leg) { leg.after_tick(now); });
    outbox_->flush();
}

void Worker::run() {
    // Named so top -H and the benchmarks can tell the media threads apart.
    pthread_setname_np(pthread_self(), "callbox-media");
    if (receiving_.available()) {
        run_on_ring();
    } else {
        run_on_epoll();
    }
    apply_commands(Clock::now());  // commands queued before stop still get their answer
    outbox_->flush();
}

void Worker::finish_wake(Clock::time_point now, std::uint64_t frames, bool woken) {
    // Relayed packets leave now, in one batch, not at the next tick.
    outbox_->flush();
    // Commands apply as soon as they are posted (the wake-up), and at a
    // tick before its audio, so one posted just before a tick counts for
    // it; either way on this thread, so legs need no locks. The audio
    // itself stays on the timer's 20 ms grid.
    if (woken || frames > 0) apply_commands(now);
    if (frames > 0) tick(now, frames);
    else if (woken) outbox_->flush();  // what the commands sent
}

void Worker::run_on_epoll() {
    // As many as the echo floor takes per wait: under load, fewer waits.
    std::array<epoll_event, 256> ready{};
    while (!stopping_) {
        const int n = epoll_wait(epoll_fd_, ready.data(), static_cast<int>(ready.size()), -1);
        if (n < 0) continue;  // EINTR
        const Clock::time_point now = Clock::now();
        std::uint64_t frames = 0;
        bool woken = false;
        for (int i = 0; i < n; ++i) {
            void* const tag = ready[static_cast<std::size_t>(i)].data.ptr;
            if (tag == &timer_fd_) {
                [[maybe_unused]] const auto got = read(timer_fd_, &frames, sizeof frames);
            } else if (tag == &wake_fd_) {
                std::uint64_t posts = 0;
                [[maybe_unused]] const auto got = read(wake_fd_, &posts, sizeof posts);
                woken = true;
            } else {
                // Legs are only removed by commands, which run after this loop
                // (and take their sockets out of epoll first): the entry is alive.
                const Watch& watched = *static_cast<const Watch*>(tag);
                watched.leg->on_readable(watched.fd, now);
            }
        }
        finish_wake(now, frames, woken);
    }
}

void Worker::run_on_ring() {
    receiving_.poll(timer_fd_, &timer_fd_);
    receiving_.poll(wake_fd_, &wake_fd_);
    while (!stopping_) {
        // A tick's relays may have taken the timer's or a command's wake-up: no sleep then.
        const auto done = receiving_.wait(due_frames_ == 0 && !woken_);
        const Clock::time_point now = Clock::now();
        take(done, now);
        finish_wake(now, std::exchange(due_frames_, 0), std::exchange(woken_, false));
    }
}

void Worker::take(std::span<const ReceiveRing::Completion> done, Clock::time_point now) {
    for (const ReceiveRing::Completion& completion : done) {
        if (completion.tag == &timer_fd_ || completion.tag == &wake_fd_) {
            int& fd = *static_cast<int*>(completion.tag);
            if (!completion.more) receiving_.poll(fd, &fd);
            std::uint64_t count = 0;
            if (read(fd, &count, sizeof count) != sizeof count) continue;  // read at an earlier completion
            if (fd == timer_fd_) due_frames_ += count;
            else woken_ = true;
            continue;
        }
        Watch& watched = *static_cast<Watch*>(completion.tag);
        if (watched.leg == nullptr) {
            // A removed leg's: once its receive has ended, nothing refers to the watch.
            if (!completion.more) {
                std::erase_if(retired_, [&](const std::unique_ptr<Watch>& w) { return w.get() == &watched; });
            }
            continue;
        }
        if (completion.source != nullptr) {
            inbox_->present(watched.fd, completion);
            watched.leg->on_readable(watched.fd, now);
        }
        // Ended (out of buffers, an error the socket reported): armed again.
        if (!completion.more) receiving_.receive(watched.fd, &watched);
    }
}

}  // namespace callbox::engine
