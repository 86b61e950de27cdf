#include "engine/events.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace callbox::engine {

EventQueue::EventQueue() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (fd_ < 0) throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
}

EventQueue::~EventQueue() { close(fd_); }

void EventQueue::push(Event event) {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto written = write(fd_, &one, sizeof one);
}

std::vector<Event> EventQueue::drain() {
    std::lock_guard lock(mutex_);
    // Reading under the lock pairs the fd's readiness with the list: a push after
    // this makes the fd readable again.
    std::uint64_t count = 0;
    [[maybe_unused]] const auto got = read(fd_, &count, sizeof count);
    std::vector<Event> out;
    out.swap(events_);
    return out;
}

}  // namespace callbox::engine
