// Events from the workers to Python: a mutex-protected list and an eventfd
// that becomes readable when the list is not empty (for loop.add_reader).
#pragma once

#include <mutex>
#include <vector>

#include "engine/leg.h"

namespace callbox::engine {

class EventQueue {
public:
    EventQueue();
    ~EventQueue();
    EventQueue(const EventQueue&) = delete;
    EventQueue& operator=(const EventQueue&) = delete;

    void push(Event event);
    // Everything queued so far; clears the eventfd's readiness.
    std::vector<Event> drain();
    int fd() const { return fd_; }

private:
    int fd_;
    std::mutex mutex_;
    std::vector<Event> events_;
};

}  // namespace callbox::engine
