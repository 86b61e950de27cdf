// Batched UDP I/O for a worker. Each leg has a socket of its own, and most
// hold a single datagram when epoll reports them, so recvmmsg/sendmmsg batch
// little: what they cost is one system call per socket. Where the kernel has
// io_uring, a worker instead receives one datagram from every readable socket
// in one io_uring_enter, and sends everything queued, to any sockets, in one
// more; without it (a kernel or container that refuses io_uring) the same
// classes fall back to recvmmsg and sendmmsg per socket.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace callbox::engine {

inline constexpr std::size_t kMaxDatagram = 2048;
inline constexpr std::size_t kBatch = 32;

// An IPv4 UDP socket bound to host:port, non-blocking; -1 if the bind fails.
int open_udp(const std::string& host, std::uint16_t port);
// Parses a dotted IPv4 address; throws std::invalid_argument naming it if bad.
sockaddr_in ipv4_address(const std::string& host, std::uint16_t port);
std::string format_address(const sockaddr_in& address);
bool same_address(const sockaddr_in& a, const sockaddr_in& b);

// Many sockets' sends or receives in one system call: an io_uring whose
// operations all complete at once (MSG_DONTWAIT: a socket that cannot take or
// give a datagram now fails the operation with EAGAIN instead of parking it).
class BatchRing {
public:
    explicit BatchRing(unsigned entries);
    ~BatchRing();
    BatchRing(const BatchRing&) = delete;
    BatchRing& operator=(const BatchRing&) = delete;

    // False when the kernel refused io_uring: callers use recvmmsg/sendmmsg.
    bool available() const { return ring_ != nullptr; }
    // Queues one sendmsg or recvmsg; `slot` indexes its result in complete():
    // the slots of one batch are 0, 1, 2... in order, at most `entries` of them.
    void prepare_send(int fd, const msghdr& message, std::size_t slot);
    void prepare_receive(int fd, msghdr& message, std::size_t slot);
    // Submits what is queued, waits for all of it, and stores each
    // operation's result (bytes, or -errno) at results[slot].
    // Never throws: a ring that fails is closed and available() turns false.
    void complete(std::span<int> results);

private:
    struct Ring;
    std::unique_ptr<Ring> ring_;
    unsigned queued_ = 0;
};

class Inbox {
public:
    static constexpr std::size_t kPrefetch = 256;  // as many as one epoll_wait reports
    Inbox();
    // Receives one datagram from each of `fds` (readable sockets, in the order
    // the worker will then call receive() for them) in one system call, where
    // io_uring is available; does nothing otherwise.
    void prefetch(std::span<const int> fds);
    // Receives up to kBatch datagrams from `fd`; returns how many (0 when
    // drained). After prefetch(), the prefetched datagram of `fd` (1 or 0).
    std::size_t receive(int fd);
    std::span<const std::uint8_t> data(std::size_t i) const;
    const sockaddr_in& source(std::size_t i) const { return *static_cast<const sockaddr_in*>(view_[i].msg_hdr.msg_name); }
    bool truncated(std::size_t i) const { return (view_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0; }

private:
    // What receive() returned: headers_ after recvmmsg, one of prefetched_ after prefetch().
    const mmsghdr* view_ = nullptr;
    std::array<std::array<std::uint8_t, kMaxDatagram>, kBatch> buffers_{};
    std::array<sockaddr_in, kBatch> sources_{};
    std::array<iovec, kBatch> iov_{};
    std::array<mmsghdr, kBatch> headers_{};
    // Headers the last receive() filled: the kernel rewrote their name
    // lengths and flags, so only they are set up again (a socket most often
    // holds one datagram, and preparing all 32 headers each time cost more).
    std::size_t used_ = 0;

    BatchRing ring_{kPrefetch};
    std::array<std::array<std::uint8_t, kMaxDatagram>, kPrefetch> prefetch_buffers_{};
    std::array<sockaddr_in, kPrefetch> prefetch_sources_{};
    std::array<iovec, kPrefetch> prefetch_iov_{};
    std::array<mmsghdr, kPrefetch> prefetched_{};
    std::array<int, kPrefetch> prefetch_fds_{};
    std::array<int, kPrefetch> prefetch_results_{};
    std::size_t prefetch_count_ = 0;
    std::size_t prefetch_next_ = 0;  // the next prefetched datagram receive() hands out
};

class Outbox {
public:
    static constexpr std::size_t kSlots = 128;
    // A buffer for the next datagram; commit() queues it. Flushes first if full.
    std::span<std::uint8_t> reserve();
    void commit(int fd, const sockaddr_in& to, std::size_t size);
    // Sends everything queued: in one io_uring_enter, or one sendmmsg per run
    // of datagrams on the same socket.
    void flush();
    std::uint64_t send_failures() const { return send_failures_; }

private:
    std::array<std::array<std::uint8_t, kMaxDatagram>, kSlots> buffers_{};
    std::array<sockaddr_in, kSlots> to_{};
    std::array<int, kSlots> fds_{};
    std::array<iovec, kSlots> iov_{};
    std::array<mmsghdr, kSlots> headers_{};
    std::size_t count_ = 0;
    std::uint64_t send_failures_ = 0;
    BatchRing ring_{kSlots};
    std::array<int, kSlots> results_{};
};

}  // namespace callbox::engine
