#include "engine/io.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

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

namespace {

bool kernel_at_least(int wanted_major, int wanted_minor) {
    utsname name{};
    int major = 0;
    int minor = 0;
    if (uname(&name) != 0 || std::sscanf(name.release, "%d.%d", &major, &minor) != 2) return false;
    return major > wanted_major || (major == wanted_major && minor >= wanted_minor);
}

// Multishot recvmsg came in Linux 6.0 and sends with an address in 6.1: an
// older kernel could set a ring up and then refuse every operation.
bool kernel_has_what_rings_use() { return kernel_at_least(6, 1); }

// Rings wherever the kernel has what they use, unless CALLBOX_IO_URING=off
// (a kernel or container that then refuses io_uring_setup still gets epoll:
// each ring's constructor falls back when setting it up fails).
bool use_io_uring() {
    const char* setting = std::getenv("CALLBOX_IO_URING");
    if (setting != nullptr && std::string_view(setting) == "off") return false;
    return kernel_has_what_rings_use();
}

// A ring's registered (fixed) files. An operation on a plain fd makes the
// kernel look the fd up and take a reference to its file (fget/fput), every
// time; a socket given a slot in the ring's table once is named by its slot
// (IOSQE_FIXED_FILE) and costs neither. Slots come from a free list, not
// from the fd numbers: the table then holds only this ring's sockets.
class FixedFiles {
public:
    // A sparse table: 16,384 slots (8,192 legs with RTCP, several times what
    // a worker carries at full load), fewer if RLIMIT_NOFILE is lower (the
    // kernel refuses a table larger than it, and the process could not open
    // more sockets anyway). Cannot grow: a table is replaced only once no
    // operation uses it, and armed receives always do. A socket for which no
    // slot is left, or a kernel that refuses the table, keeps its plain fd.
    // Only from Linux 6.13: before, a file taken out of the table was let go
    // only once every operation that started on the table before it had
    // ended (and on 6.1-6.3 a second later still), so one long call's armed
    // receive would keep every closed leg's socket, and its port, open.
    void open(io_uring& ring) {
        static constexpr rlim_t kSlots = 16384;
        if (!kernel_at_least(6, 13)) return;
        rlimit limit{};
        const rlim_t slots = getrlimit(RLIMIT_NOFILE, &limit) == 0 ? std::min(limit.rlim_cur, kSlots) : 0;
        if (slots == 0 || io_uring_register_files_sparse(&ring, static_cast<unsigned>(slots)) < 0) return;
        free_.resize(slots);
        // Taken from the back: slot 0 first.
        for (std::size_t i = 0; i < slots; ++i) free_[i] = static_cast<unsigned>(slots - 1 - i);
    }

    // Gives `fd` a slot unless it has one.
    void add(io_uring& ring, int fd) {
        if (slot(fd) >= 0 || free_.empty()) return;
        const unsigned taken = free_.back();
        if (io_uring_register_files_update(&ring, taken, &fd, 1) != 1) return;  // plain fd it is
        free_.pop_back();
        if (static_cast<std::size_t>(fd) >= slot_of_.size()) slot_of_.resize(static_cast<std::size_t>(fd) + 1, -1);
        slot_of_[static_cast<std::size_t>(fd)] = static_cast<int>(taken);
    }

    // Empties `fd`'s slot before the socket closes: the table holds a
    // reference to the socket (close() alone would leave it bound), and the
    // fd number, once reused, must not find the old socket's slot.
    void remove(io_uring& ring, int fd) {
        const int taken = slot(fd);
        if (taken < 0) return;
        int empty = -1;
        io_uring_register_files_update(&ring, static_cast<unsigned>(taken), &empty, 1);
        slot_of_[static_cast<std::size_t>(fd)] = -1;
        free_.push_back(static_cast<unsigned>(taken));
    }

    // Turns an operation prepared on `fd` into one on its slot, if it has one.
    void aim(io_uring_sqe* sqe, int fd) const {
        const int taken = slot(fd);
        if (taken < 0) return;
        sqe->fd = taken;
        sqe->flags |= IOSQE_FIXED_FILE;
    }

private:
    int slot(int fd) const {
        return static_cast<std::size_t>(fd) < slot_of_.size() ? slot_of_[static_cast<std::size_t>(fd)] : -1;
    }

    std::vector<int> slot_of_;  // by fd number; -1: no slot
    std::vector<unsigned> free_;
};

}  // namespace

struct BatchRing::Ring {
    io_uring ring{};
    FixedFiles files;
};

BatchRing::BatchRing(unsigned entries) : ring_(std::make_unique<Ring>()) {
    if (!use_io_uring()) {
        ring_.reset();
        return;
    }
    // SUBMIT_ALL: one operation failing at submission (a socket closed under
    // it) must not leave the rest of the batch unsubmitted.
    if (io_uring_queue_init(entries, &ring_->ring, IORING_SETUP_SUBMIT_ALL) < 0) {
        ring_.reset();
        return;
    }
    ring_->files.open(ring_->ring);
}

BatchRing::~BatchRing() {
    if (ring_) io_uring_queue_exit(&ring_->ring);
}

void BatchRing::prepare_send(int fd, std::span<const std::uint8_t> datagram, const sockaddr_in& to,
                             std::size_t slot) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_->ring);
    // A send with an address (sendto): no msghdr or iovec for the kernel to copy in.
    io_uring_prep_send(sqe, fd, datagram.data(), datagram.size(), MSG_DONTWAIT);
    io_uring_prep_send_set_addr(sqe, reinterpret_cast<const sockaddr*>(&to), sizeof to);
    ring_->files.aim(sqe, fd);
    io_uring_sqe_set_data64(sqe, slot);
    ++queued_;
}

void BatchRing::add_socket(int fd) {
    if (ring_) ring_->files.add(ring_->ring, fd);
}

void BatchRing::remove_socket(int fd) {
    if (ring_) ring_->files.remove(ring_->ring, fd);
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

struct ReceiveRing::Ring {
    static constexpr unsigned kEntries = 1024;     // submissions between two waits (arming legs)
    static constexpr unsigned kCompletions = 16384;  // datagrams that may wait for the worker
    static constexpr unsigned kBuffers = 8192;       // a power of two
    static constexpr int kGroup = 0;
    // What the kernel writes to a buffer: a header, the source address, the payload.
    static constexpr std::size_t kBufferSize = sizeof(io_uring_recvmsg_out) + sizeof(sockaddr_in) + kMaxDatagram;

    io_uring ring{};
    FixedFiles files;
    io_uring_buf_ring* buffers = nullptr;
    std::unique_ptr<std::uint8_t[]> memory;  // kBuffers of kBufferSize
    msghdr shape{};  // what every multishot recvmsg fills: a source address, no control data
    std::vector<Completion> completions;
    std::vector<std::uint16_t> lent;  // buffers the last wait() handed out, returned by the next

    std::uint8_t* buffer(std::size_t id) { return memory.get() + id * kBufferSize; }
    io_uring_sqe* sqe() {
        io_uring_sqe* entry = io_uring_get_sqe(&ring);
        if (entry == nullptr) {  // full: submit what is queued, then there is room
            io_uring_submit(&ring);
            entry = io_uring_get_sqe(&ring);
        }
        return entry;
    }
};

ReceiveRing::ReceiveRing() {
    if (!use_io_uring()) return;
    auto ring = std::make_unique<Ring>();
    io_uring_params params{};
    // A large completion queue: a tick's work can leave many datagrams waiting.
    params.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN;
    params.cq_entries = Ring::kCompletions;
    if (io_uring_queue_init_params(Ring::kEntries, &ring->ring, &params) < 0) return;
    void* buffer_ring = nullptr;
    if (posix_memalign(&buffer_ring, 4096, Ring::kBuffers * sizeof(io_uring_buf)) != 0) {
        io_uring_queue_exit(&ring->ring);
        return;
    }
    ring->buffers = static_cast<io_uring_buf_ring*>(buffer_ring);
    io_uring_buf_reg registration{};
    registration.ring_addr = reinterpret_cast<std::uint64_t>(buffer_ring);
    registration.ring_entries = Ring::kBuffers;
    registration.bgid = Ring::kGroup;
    if (io_uring_register_buf_ring(&ring->ring, &registration, 0) != 0) {
        io_uring_queue_exit(&ring->ring);
        std::free(buffer_ring);
        return;
    }
    // Not zeroed: the kernel writes each buffer before the worker reads it.
    ring->memory = std::make_unique_for_overwrite<std::uint8_t[]>(Ring::kBuffers * Ring::kBufferSize);
    io_uring_buf_ring_init(ring->buffers);
    const int mask = io_uring_buf_ring_mask(Ring::kBuffers);
    for (unsigned id = 0; id < Ring::kBuffers; ++id) {
        io_uring_buf_ring_add(ring->buffers, ring->buffer(id), Ring::kBufferSize, static_cast<unsigned short>(id),
                              mask, static_cast<int>(id));
    }
    io_uring_buf_ring_advance(ring->buffers, Ring::kBuffers);
    ring->files.open(ring->ring);
    ring->shape.msg_namelen = sizeof(sockaddr_in);
    ring->completions.reserve(Ring::kCompletions);
    ring->lent.reserve(Ring::kCompletions);
    ring_ = std::move(ring);
}

ReceiveRing::~ReceiveRing() {
    if (!ring_) return;
    io_uring_queue_exit(&ring_->ring);
    std::free(ring_->buffers);
}

void ReceiveRing::receive(int fd, void* tag) {
    ring_->files.add(ring_->ring, fd);
    io_uring_sqe* sqe = ring_->sqe();
    // MSG_TRUNC: a datagram longer than a buffer is reported as such, not cut silently.
    io_uring_prep_recvmsg_multishot(sqe, fd, &ring_->shape, MSG_TRUNC);
    ring_->files.aim(sqe, fd);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = Ring::kGroup;
    io_uring_sqe_set_data(sqe, tag);
}

void ReceiveRing::poll(int fd, void* tag) {
    ring_->files.add(ring_->ring, fd);
    io_uring_sqe* sqe = ring_->sqe();
    io_uring_prep_poll_multishot(sqe, fd, POLLIN);
    ring_->files.aim(sqe, fd);
    io_uring_sqe_set_data(sqe, tag);
}

void ReceiveRing::cancel(int fd, void* tag) {
    io_uring_sqe* sqe = ring_->sqe();
    io_uring_prep_cancel(sqe, tag, 0);
    // The cancel's own completion is not wanted: only the cancelled operation's last one.
    io_uring_sqe_set_data(sqe, nullptr);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    // Now, not at the next wait: the armed receive holds the socket open,
    // and a closed leg's port must be free when close() answers.
    io_uring_submit(&ring_->ring);
    // So does the socket's slot; the cancelled receive keeps what it needs
    // of the table until its last completion.
    ring_->files.remove(ring_->ring, fd);
}

std::span<const ReceiveRing::Completion> ReceiveRing::wait(bool block) {
    Ring& r = *ring_;
    if (!r.lent.empty()) {
        const int mask = io_uring_buf_ring_mask(Ring::kBuffers);
        int offset = 0;
        for (const std::uint16_t id : r.lent) {
            io_uring_buf_ring_add(r.buffers, r.buffer(id), Ring::kBufferSize, id, mask, offset++);
        }
        io_uring_buf_ring_advance(r.buffers, offset);
        r.lent.clear();
    }
    r.completions.clear();
    // An error here (a signal, the kernel short of memory for a moment) is
    // like epoll_wait's EINTR: the worker comes back, completions keep.
    if ((block ? io_uring_submit_and_wait(&r.ring, 1) : io_uring_submit(&r.ring)) < 0) return {};
    io_uring_cqe* cqe = nullptr;
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_for_each_cqe(&r.ring, head, cqe) {
        ++seen;
        if (cqe->user_data == 0) continue;  // a failed cancel: what it meant to end had ended
        Completion done{io_uring_cqe_get_data(cqe), cqe->res, (cqe->flags & IORING_CQE_F_MORE) != 0, {}, nullptr,
                        false};
        if ((cqe->flags & IORING_CQE_F_BUFFER) != 0) {
            const auto id = static_cast<std::uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
            r.lent.push_back(id);
            io_uring_recvmsg_out* out = io_uring_recvmsg_validate(r.buffer(id), cqe->res, &r.shape);
            if (out != nullptr && out->namelen >= sizeof(sockaddr_in)) {
                done.source = static_cast<const sockaddr_in*>(io_uring_recvmsg_name(out));
                done.data = {static_cast<const std::uint8_t*>(io_uring_recvmsg_payload(out, &r.shape)),
                             io_uring_recvmsg_payload_length(out, cqe->res, &r.shape)};
                done.truncated = (out->flags & MSG_TRUNC) != 0;
            } else {
                // Nothing sensible came: handed on as a truncated datagram, counted malformed.
                static const sockaddr_in nowhere{};
                done.source = &nowhere;
                done.truncated = true;
            }
        }
        r.completions.push_back(done);
    }
    io_uring_cq_advance(&r.ring, seen);
    return r.completions;
}

Inbox::Inbox() {
    for (std::size_t i = 0; i < kBatch; ++i) {
        point_header(headers_[i], iov_[i], sources_[i], buffers_[i].data(), kMaxDatagram);
    }
    point_header(presented_, presented_iov_, presented_source_, nullptr, 0);
}

void Inbox::present(int fd, const ReceiveRing::Completion& datagram) {
    presented_fd_ = fd;
    presented_iov_ = {const_cast<std::uint8_t*>(datagram.data.data()), datagram.data.size()};
    presented_.msg_len = static_cast<unsigned>(datagram.data.size());
    presented_.msg_hdr.msg_flags = datagram.truncated ? MSG_TRUNC : 0;
    presented_source_ = *datagram.source;
}

std::size_t Inbox::receive(int fd) {
    if (presented_fd_ == fd) {
        presented_fd_ = -1;
        view_ = &presented_;
        return 1;
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

void Outbox::add_socket(int fd) { ring_.add_socket(fd); }

void Outbox::remove_socket(int fd) {
    // What is queued may name the socket: it leaves before the socket closes
    // (and before its fd number can come back as another leg's).
    flush();
    ring_.remove_socket(fd);
}

void Outbox::flush() {
    if (ring_.available() && count_ > 0) {
        for (std::size_t i = 0; i < count_; ++i) {
            ring_.prepare_send(fds_[i], std::span(buffers_[i]).first(iov_[i].iov_len), to_[i], i);
        }
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
