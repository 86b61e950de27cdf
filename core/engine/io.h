// Batched UDP I/O for a worker: datagrams received with recvmmsg into a
// shared scratch area, and queued then sent with sendmmsg.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
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

class Inbox {
public:
    Inbox();
    // Receives up to kBatch datagrams from `fd`; returns how many (0 when drained).
    std::size_t receive(int fd);
    std::span<const std::uint8_t> data(std::size_t i) const;
    const sockaddr_in& source(std::size_t i) const { return sources_[i]; }
    bool truncated(std::size_t i) const { return (headers_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0; }

private:
    std::array<std::array<std::uint8_t, kMaxDatagram>, kBatch> buffers_{};
    std::array<sockaddr_in, kBatch> sources_{};
    std::array<iovec, kBatch> iov_{};
    std::array<mmsghdr, kBatch> headers_{};
    // Headers the last receive() filled: the kernel rewrote their name
    // lengths and flags, so only they are set up again (a socket most often
    // holds one datagram, and preparing all 32 headers each time cost more).
    std::size_t used_ = 0;
};

class Outbox {
public:
    static constexpr std::size_t kSlots = 128;
    // A buffer for the next datagram; commit() queues it. Flushes first if full.
    std::span<std::uint8_t> reserve();
    void commit(int fd, const sockaddr_in& to, std::size_t size);
    // Sends everything queued, one sendmmsg per run of datagrams on the same socket.
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
};

}  // namespace callbox::engine
