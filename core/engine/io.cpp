#include "engine/io.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace callbox::engine {

sockaddr_in ipv4_address(const std::string& host, std::uint16_t port) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    if (inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1) {
        throw std::invalid_argument("not an IPv4 address: '" + host + "'");
    }
    return address;
}

std::string format_address(const sockaddr_in& address) {
    char text[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &address.sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(address.sin_port));
}

namespace {

void point_header(mmsghdr& header, iovec& iov, sockaddr_in& address, void* data, std::size_t size) {
    iov = {data, size};
    header = {};
    header.msg_hdr.msg_iov = &iov;
    header.msg_hdr.msg_iovlen = 1;
    header.msg_hdr.msg_name = &address;
    header.msg_hdr.msg_namelen = sizeof(sockaddr_in);
}

}  // namespace

bool same_address(const sockaddr_in& a, const sockaddr_in& b) {
    return a.sin_port == b.sin_port && a.sin_addr.s_addr == b.sin_addr.s_addr;
}

int open_udp(const std::string& host, std::uint16_t port) {
    const sockaddr_in address = ipv4_address(host, port);
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error(std::string("cannot create a UDP socket: ") + std::strerror(errno));
    if (bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

struct BatchRing::Ring {
    io_uring ring{};
};

BatchRing::BatchRing(unsigned entries) : ring_(std::make_unique<Ring>()) {
    // CALLBOX_IO_URING=off: the system-call-per-socket path, for comparison and for its tests.
    const char* setting = std::getenv("CALLBOX_IO_URING");
    if (setting != nullptr && std::string_view(setting) == "off") {
        ring_.reset();
        return;
    }
    // SUBMIT_ALL: one operation failing at submission (a socket closed under
    // it) must not leave the rest of the batch unsubmitted.
    if (io_uring_queue_init(entries, &ring_->ring, IORING_SETUP_SUBMIT_ALL) < 0) ring_.reset();
}

BatchRing::~BatchRing() {
    if (ring_) io_uring_queue_exit(&ring_->ring);
}

void BatchRing::prepare_send(int fd, const msghdr& message, std::size_t slot) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_->ring);
    io_uring_prep_sendmsg(sqe, fd, &message, MSG_DONTWAIT);
    io_uring_sqe_set_data64(sqe, slot);
    ++queued_;
}

void BatchRing::prepare_receive(int fd, msghdr& message, std::size_t slot) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_->ring);
    // MSG_TRUNC: the result is the datagram's real length, so a truncated one is seen.
    io_uring_prep_recvmsg(sqe, fd, &message, MSG_DONTWAIT | MSG_TRUNC);
    io_uring_sqe_set_data64(sqe, slot);
    ++queued_;
}

void BatchRing::complete(std::span<int> results) {
    const unsigned queued = std::exchange(queued_, 0U);
    std::fill_n(results.begin(), queued, -ECANCELED);
    unsigned done = 0;
    while (done < queued) {
        // Submits what is not yet submitted and waits: every operation is
        // non-blocking, so the wait ends once the kernel has run them all.
        const int submitted = io_uring_submit_and_wait(&ring_->ring, queued - done);
        if (submitted < 0 && submitted != -EINTR && submitted != -EAGAIN && submitted != -EBUSY) {
            // A ring that cannot submit (never seen) is given up: closing it
            // ends its operations, whose slots keep -ECANCELED, and from now on
            // the worker uses recvmmsg/sendmmsg.
            io_uring_queue_exit(&ring_->ring);
            ring_.reset();
            return;
        }
        io_uring_cqe* cqe = nullptr;
        unsigned head = 0;
        unsigned seen = 0;
        io_uring_for_each_cqe(&ring_->ring, head, cqe) {
            results[io_uring_cqe_get_data64(cqe)] = cqe->res;
            ++seen;
        }
        io_uring_cq_advance(&ring_->ring, seen);
        done += seen;
    }
}

Inbox::Inbox() {
    for (std::size_t i = 0; i < kBatch; ++i) {
        point_header(headers_[i], iov_[i], sources_[i], buffers_[i].data(), kMaxDatagram);
    }
    for (std::size_t i = 0; i < kPrefetch; ++i) {
        point_header(prefetched_[i], prefetch_iov_[i], prefetch_sources_[i], prefetch_buffers_[i].data(),
                     kMaxDatagram);
    }
}

void Inbox::prefetch(std::span<const int> fds) {
    prefetch_count_ = 0;
    prefetch_next_ = 0;
    if (!ring_.available()) return;
    prefetch_count_ = std::min(fds.size(), kPrefetch);
    for (std::size_t i = 0; i < prefetch_count_; ++i) {
        prefetch_fds_[i] = fds[i];
        prefetched_[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
        ring_.prepare_receive(fds[i], prefetched_[i].msg_hdr, i);
    }
    ring_.complete(prefetch_results_);
    for (std::size_t i = 0; i < prefetch_count_; ++i) {
        const int result = prefetch_results_[i];
        const auto length = static_cast<std::size_t>(std::max(result, 0));
        prefetched_[i].msg_len = static_cast<unsigned>(std::min(length, kMaxDatagram));
        prefetched_[i].msg_hdr.msg_flags = length > kMaxDatagram ? MSG_TRUNC : 0;
    }
}

std::size_t Inbox::receive(int fd) {
    if (prefetch_next_ < prefetch_count_ && prefetch_fds_[prefetch_next_] == fd) {
        const std::size_t slot = prefetch_next_++;
        view_ = &prefetched_[slot];
        // An error (EAGAIN: nothing after all; a pending ICMP error) is consumed like recvmmsg's.
        return prefetch_results_[slot] >= 0 ? 1 : 0;
    }
    for (std::size_t i = 0; i < used_; ++i) {
        headers_[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
        headers_[i].msg_hdr.msg_flags = 0;
    }
    const int n = recvmmsg(fd, headers_.data(), kBatch, MSG_DONTWAIT, nullptr);
    used_ = n > 0 ? static_cast<std::size_t>(n) : 0;
    view_ = headers_.data();
    return used_;
}

std::span<const std::uint8_t> Inbox::data(std::size_t i) const {
    return {static_cast<const std::uint8_t*>(view_[i].msg_hdr.msg_iov[0].iov_base),
            std::min<std::size_t>(view_[i].msg_len, kMaxDatagram)};
}

std::span<std::uint8_t> Outbox::reserve() {
    if (count_ == kSlots) flush();
    return buffers_[count_];
}

void Outbox::commit(int fd, const sockaddr_in& to, std::size_t size) {
    fds_[count_] = fd;
    to_[count_] = to;
    point_header(headers_[count_], iov_[count_], to_[count_], buffers_[count_].data(), size);
    ++count_;
}

void Outbox::flush() {
    if (ring_.available() && count_ > 0) {
        for (std::size_t i = 0; i < count_; ++i) ring_.prepare_send(fds_[i], headers_[i].msg_hdr, i);
        ring_.complete(std::span(results_).first(count_));
        // A datagram that failed (full socket buffer, unreachable far end) is
        // dropped, not retried: media is real-time.
        for (std::size_t i = 0; i < count_; ++i) send_failures_ += results_[i] < 0 ? 1 : 0;
        count_ = 0;
        return;
    }
    std::size_t start = 0;
    while (start < count_) {
        std::size_t end = start + 1;
        while (end < count_ && fds_[end] == fds_[start]) ++end;
        std::size_t sent = 0;
        while (sent < end - start) {
            const int n = sendmmsg(fds_[start], headers_.data() + start + sent,
                                   static_cast<unsigned>(end - start - sent), MSG_DONTWAIT);
            if (n <= 0) {
                // The datagram at the head failed (full socket buffer, unreachable
                // far end): media is real-time, so it is dropped, not retried.
                ++send_failures_;
                ++sent;
                continue;
            }
            sent += static_cast<std::size_t>(n);
        }
        start = end;
    }
    count_ = 0;
}

}  // namespace callbox::engine
