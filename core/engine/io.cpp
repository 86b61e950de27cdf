#include "engine/io.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

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

Inbox::Inbox() {
    for (std::size_t i = 0; i < kBatch; ++i) {
        point_header(headers_[i], iov_[i], sources_[i], buffers_[i].data(), kMaxDatagram);
    }
}

std::size_t Inbox::receive(int fd) {
    for (std::size_t i = 0; i < used_; ++i) {
        headers_[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
        headers_[i].msg_hdr.msg_flags = 0;
    }
    const int n = recvmmsg(fd, headers_.data(), kBatch, MSG_DONTWAIT, nullptr);
    used_ = n > 0 ? static_cast<std::size_t>(n) : 0;
    return used_;
}

std::span<const std::uint8_t> Inbox::data(std::size_t i) const {
    return {buffers_[i].data(), std::min<std::size_t>(headers_[i].msg_len, kMaxDatagram)};
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
