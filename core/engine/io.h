// Batched UDP I/O for a worker. Each leg has a socket of its own, and most
// hold a single datagram when epoll reports them, so recvmmsg/sendmmsg batch
// little: what they cost is one system call per socket. Where the kernel has
// io_uring (Linux 6.1 or later), a worker instead receives from all its
// sockets through one ring (ReceiveRing) and sends everything queued, to any
// sockets, in one io_uring_enter; otherwise (CALLBOX_IO_URING=off, an older
// kernel, or a container that refuses io_uring) it uses epoll, recvmmsg and
// sendmmsg per socket. From Linux 6.13 each ring also holds the sockets as
// registered files, so that its operations take no file reference each.
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

// Many sockets' sends in one system call: an io_uring whose
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
    // Queues one datagram to send; `slot` indexes its result in complete():
    // the slots of one batch are 0, 1, 2... in order, at most `entries` of them.
    void prepare_send(int fd, std::span<const std::uint8_t> datagram, const sockaddr_in& to, std::size_t slot);
    // Registers a socket with the ring (a fixed file: no file reference
    // taken per send); remove_socket() before it closes. No-ops without a ring.
    void add_socket(int fd);
    void remove_socket(int fd);
    // Submits what is queued, waits for all of it, and stores each
    // operation's result (bytes, or -errno) at results[slot].
    // Never throws: a ring that fails is closed and available() turns false.
    void complete(std::span<int> results);

private:
    struct Ring;
    std::unique_ptr<Ring> ring_;
    unsigned queued_ = 0;
};

// Datagrams arriving on many sockets without a system call per socket: a
// multishot recvmsg armed once per socket on an io_uring, into a ring of
// buffers the kernel picks from, with the worker's timer and wake-up
// eventfd polled on the same ring. The worker sleeps in one io_uring_enter
// (instead of epoll_wait) and finds every datagram that came in the while,
// each tagged with the socket it came to.
class ReceiveRing {
public:
    // A datagram, a socket whose multishot ended, or a readable timer/eventfd.
    struct Completion {
        void* tag;
        int result;            // bytes received, or -errno
        bool more;             // false: the operation ended and needs arming again
        std::span<const std::uint8_t> data;
        const sockaddr_in* source;  // nullptr unless a datagram (then Inbox::present() it)
        bool truncated;
    };

    ReceiveRing();
    ~ReceiveRing();
    ReceiveRing(const ReceiveRing&) = delete;
    ReceiveRing& operator=(const ReceiveRing&) = delete;

    // False with CALLBOX_IO_URING=off or a kernel without what rings use: the worker uses epoll and Inbox.
    bool available() const { return ring_ != nullptr; }
    // Receives every datagram of `fd` until cancel(fd, tag); completions
    // carry `tag`. The first call registers `fd` with the ring (a fixed
    // file, so that no operation on it takes a file reference).
    void receive(int fd, void* tag);
    // Reports `fd` readable (for a timerfd or eventfd the worker then reads);
    // `fd` stays registered for the ring's life.
    void poll(int fd, void* tag);
    // Ends what receive(fd, tag) started and unregisters `fd`, at once (its
    // socket can then close): its last completion, at a later wait(), has
    // more == false.
    void cancel(int fd, void* tag);
    // Submits what is queued, sleeps until something completes, and returns
    // what did (nothing after an interrupted wait); valid until the next
    // wait(), which hands their buffers back. With `block` false it does not
    // sleep: what has completed so far, perhaps nothing.
    std::span<const Completion> wait(bool block = true);

private:
    struct Ring;
    std::unique_ptr<Ring> ring_;
};

class Inbox {
public:
    Inbox();
    // Receives up to kBatch datagrams from `fd`; returns how many (0 when
    // drained). Right after present(fd, ...), the presented datagram (1).
    std::size_t receive(int fd);
    // A datagram that came to `fd` through a ReceiveRing: the next receive(fd) returns it.
    void present(int fd, const ReceiveRing::Completion& datagram);
    std::span<const std::uint8_t> data(std::size_t i) const;
    const sockaddr_in& source(std::size_t i) const {
        return *static_cast<const sockaddr_in*>(view_[i].msg_hdr.msg_name);
    }
    bool truncated(std::size_t i) const { return (view_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0; }

private:
    // What receive() returned: headers_ after recvmmsg, or presented_.
    const mmsghdr* view_ = nullptr;
    std::array<std::array<std::uint8_t, kMaxDatagram>, kBatch> buffers_{};
    std::array<sockaddr_in, kBatch> sources_{};
    std::array<iovec, kBatch> iov_{};
    std::array<mmsghdr, kBatch> headers_{};
    // Headers the last receive() filled: the kernel rewrote their name
    // lengths and flags, so only they are set up again (a socket most often
    // holds one datagram, and preparing all 32 headers each time cost more).
    std::size_t used_ = 0;

    mmsghdr presented_{};
    iovec presented_iov_{};
    sockaddr_in presented_source_{};
    int presented_fd_ = -1;
};

class Outbox {
public:
    static constexpr std::size_t kSlots = 128;
    // A buffer for the next datagram; commit() queues it. Flushes first if full.
    std::span<std::uint8_t> reserve();
    void commit(int fd, const sockaddr_in& to, std::size_t size);
    // A socket that datagrams will be committed to: registered with the ring.
    void add_socket(int fd);
    // Before the socket closes: sends what is queued, then unregisters it.
    void remove_socket(int fd);
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
