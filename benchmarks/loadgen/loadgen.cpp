// RTP load generator and UDP echo floor for the media core's capacity benchmark.
//
// generate: per simulated call, a "caller phone" and an "agent phone" (one
// UDP socket each) send a 20 ms G.711 packet every 20 ms to the call's two
// legs on the box and count what the box relays back to them. The payload
// carries the call, the direction, the packet's tick and its send time, so
// the transit through the box is measured per packet, whatever the box does
// to the RTP header.
//
// echo: the floor. One socket per leg that sends every datagram straight
// back to its source, with recvmmsg/sendmmsg and no processing at all.
//
// Both speak a line protocol with benchmarks/capacity.py on stdin/stdout
// (see usage()); results are one JSON object on stdout.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr std::size_t kRtpHeader = 12;
constexpr std::size_t kPayload = 160;  // 20 ms of G.711 at 8 kHz
constexpr std::size_t kPacket = kRtpHeader + kPayload;
constexpr std::uint8_t kPayloadTypePcma = 8;
constexpr std::uint32_t kMagic = 0x43424c47;  // "CBLG": a packet of ours, not the box's RTCP
constexpr std::size_t kBatch = 32;
constexpr std::size_t kMaxDatagram = 1500;
constexpr std::int64_t kPacketNs = 20'000'000;
// Calls are spread over the 20 ms in this many groups, as real phones are not in step.
constexpr std::size_t kPhases = 20;

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

[[noreturn]] void fail_errno(const std::string& what) { throw Error(what + ": " + std::strerror(errno)); }

std::int64_t ns_of(const timespec& ts) { return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec; }

std::int64_t now_ns(clockid_t clock = CLOCK_MONOTONIC) {
    timespec ts{};
    clock_gettime(clock, &ts);
    return ns_of(ts);
}

// Packets carry their send time on the clock of the kernel's receive timestamps.
std::int64_t wall_ns() { return now_ns(CLOCK_REALTIME); }

std::int64_t cpu_ns() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    auto ns = [](const timeval& tv) { return static_cast<std::int64_t>(tv.tv_sec) * 1'000'000'000 + tv.tv_usec * 1000; };
    return ns(usage.ru_utime) + ns(usage.ru_stime);
}

void put32(std::uint8_t* p, std::uint32_t v) {
    v = htonl(v);
    std::memcpy(p, &v, 4);
}

std::uint32_t get32(const std::uint8_t* p) {
    std::uint32_t v = 0;
    std::memcpy(&v, p, 4);
    return ntohl(v);
}

void put64(std::uint8_t* p, std::uint64_t v) {
    put32(p, static_cast<std::uint32_t>(v >> 32));
    put32(p + 4, static_cast<std::uint32_t>(v));
}

std::uint64_t get64(const std::uint8_t* p) { return (std::uint64_t{get32(p)} << 32) | get32(p + 4); }

// Each socket is one file descriptor; a thousand calls need thousands.
void raise_file_limit() {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

void pin_to_cpu(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) fail_errno("cannot pin to CPU " + std::to_string(cpu));
}

sockaddr_in ipv4(const std::string& host, std::uint16_t port) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    if (inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1) throw Error("not an IPv4 address: " + host);
    return address;
}

// A non-blocking UDP socket on host:0, added to the epoll set with its index as data.
int open_socket(const std::string& host, int epoll_fd, std::uint64_t index) {
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) fail_errno("cannot create a UDP socket (raise the open-file limit?)");
    const sockaddr_in address = ipv4(host, 0);
    if (bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) fail_errno("cannot bind " + host);
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = index;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0) fail_errno("epoll_ctl");
    return fd;
}

std::uint16_t local_port(int fd) {
    sockaddr_in address{};
    socklen_t size = sizeof address;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) fail_errno("getsockname");
    return ntohs(address.sin_port);
}

// Receive buffers and headers for one recvmmsg/sendmmsg batch.
struct Batch {
    std::array<std::array<std::uint8_t, kMaxDatagram>, kBatch> data{};
    std::array<iovec, kBatch> iov{};
    std::array<sockaddr_in, kBatch> from{};
    std::array<mmsghdr, kBatch> headers{};
    std::array<std::array<char, CMSG_SPACE(sizeof(timespec))>, kBatch> control{};

    // Drain up to kBatch datagrams from fd; returns how many (0 when none is waiting).
    // With timestamps, each datagram's control data holds the kernel's arrival time.
    int receive(int fd, bool timestamps = false) {
        for (std::size_t i = 0; i < kBatch; ++i) {
            iov[i] = {data[i].data(), kMaxDatagram};
            headers[i] = {};
            headers[i].msg_hdr.msg_iov = &iov[i];
            headers[i].msg_hdr.msg_iovlen = 1;
            headers[i].msg_hdr.msg_name = &from[i];
            headers[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
            if (timestamps) {
                headers[i].msg_hdr.msg_control = control[i].data();
                headers[i].msg_hdr.msg_controllen = control[i].size();
            }
        }
        const int n = recvmmsg(fd, headers.data(), kBatch, MSG_DONTWAIT, nullptr);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNREFUSED)
            fail_errno("recvmmsg");
        return std::max(n, 0);
    }

    // When datagram i reached the socket (SO_TIMESTAMPNS), or `fallback` if the kernel did not say.
    std::int64_t arrival_ns(std::size_t i, std::int64_t fallback) {
        msghdr& header = headers[i].msg_hdr;
        for (cmsghdr* c = CMSG_FIRSTHDR(&header); c != nullptr; c = CMSG_NXTHDR(&header, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                timespec ts{};
                std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
                return ns_of(ts);
            }
        }
        return fallback;
    }
};

int make_epoll() {
    const int fd = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) fail_errno("epoll_create1");
    return fd;
}

constexpr std::uint64_t kStdinIndex = ~std::uint64_t{0};
constexpr std::uint64_t kTimerIndex = kStdinIndex - 1;

void watch_stdin(int epoll_fd) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = kStdinIndex;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, STDIN_FILENO, &event) != 0) fail_errno("epoll_ctl stdin");
}

void print_ports(std::string_view label, const std::vector<int>& fds) {
    std::string line(label);
    for (int fd : fds) line += " " + std::to_string(local_port(fd));
    std::cout << line << std::endl;
}

// ---------------------------------------------------------------- echo

int run_echo(const std::string& host, std::size_t legs) {
    const int epoll_fd = make_epoll();
    std::vector<int> fds;
    for (std::size_t i = 0; i < legs; ++i) fds.push_back(open_socket(host, epoll_fd, i));
    watch_stdin(epoll_fd);
    print_ports("legs", fds);
    Batch batch;
    std::vector<epoll_event> ready(256);
    std::uint64_t echoed = 0;
    for (;;) {
        const int n = epoll_wait(epoll_fd, ready.data(), static_cast<int>(ready.size()), -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail_errno("epoll_wait");
        }
        for (int e = 0; e < n; ++e) {
            const std::uint64_t index = ready[static_cast<std::size_t>(e)].data.u64;
            if (index == kStdinIndex) {
                std::printf("{\"mode\": \"echo\", \"legs\": %zu, \"echoed\": %llu}\n", legs,
                            static_cast<unsigned long long>(echoed));
                return 0;  // the harness closed our stdin: the step is over
            }
            const int fd = fds[index];
            while (const int got = batch.receive(fd)) {
                // Send each datagram back where it came from: the same buffers, lengths and addresses.
                for (int i = 0; i < got; ++i) {
                    const auto k = static_cast<std::size_t>(i);
                    batch.iov[k].iov_len = batch.headers[k].msg_len;
                }
                if (sendmmsg(fd, batch.headers.data(), static_cast<unsigned>(got), 0) < 0 && errno != EAGAIN)
                    fail_errno("sendmmsg");
                echoed += static_cast<unsigned>(got);
                if (static_cast<std::size_t>(got) < kBatch) break;
            }
        }
    }
}

// ---------------------------------------------------------------- generate

struct Options {
    std::string mode;
    std::string host = "127.0.0.1";
    std::size_t calls = 0;
    std::size_t legs = 0;
    int cpu = -1;
    std::int64_t warmup_ms = 1000;
    std::int64_t duration_ms = 10000;
    std::int64_t drain_ms = 500;
    std::int64_t late_ms = 20;
    bool shared_sockets = false;
};

// What one direction of every call saw, over the packets sent in the measuring window.
struct Direction {
    std::uint64_t sent = 0;
    std::uint64_t received = 0;
    std::uint64_t late = 0;
    std::vector<std::uint32_t> transit_us;
};

std::uint32_t percentile(std::vector<std::uint32_t>& sorted, double p) {
    if (sorted.empty()) return 0;
    const auto rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1) + 0.5);
    return sorted[std::min(rank, sorted.size() - 1)];
}

std::string direction_json(Direction& d) {
    std::sort(d.transit_us.begin(), d.transit_us.end());
    const std::uint64_t lost = d.sent > d.received ? d.sent - d.received : 0;
    auto pct = [&](std::uint64_t n) { return d.sent ? 100.0 * static_cast<double>(n) / static_cast<double>(d.sent) : 0.0; };
    char text[512];
    std::snprintf(text, sizeof text,
                  "{\"sent\": %llu, \"received\": %llu, \"lost\": %llu, \"late\": %llu, \"lost_pct\": %.4f, "
                  "\"late_pct\": %.4f, \"transit_us\": {\"p50\": %u, \"p90\": %u, \"p99\": %u, \"p999\": %u, "
                  "\"max\": %u}}",
                  static_cast<unsigned long long>(d.sent), static_cast<unsigned long long>(d.received),
                  static_cast<unsigned long long>(lost), static_cast<unsigned long long>(d.late), pct(lost),
                  pct(d.late), percentile(d.transit_us, 50), percentile(d.transit_us, 90),
                  percentile(d.transit_us, 99), percentile(d.transit_us, 99.9),
                  d.transit_us.empty() ? 0u : d.transit_us.back());
    return text;
}

std::vector<std::uint16_t> read_ports(std::string_view label, std::size_t count) {
    std::string line;
    if (!std::getline(std::cin, line)) throw Error("stdin closed before the '" + std::string(label) + "' line");
    std::istringstream in(line);
    std::string word;
    in >> word;
    if (word != label) throw Error("expected a '" + std::string(label) + "' line, got: " + line);
    std::vector<std::uint16_t> ports;
    unsigned port = 0;
    while (in >> port) {
        if (port == 0 || port > 65535) throw Error("bad port in: " + line);
        ports.push_back(static_cast<std::uint16_t>(port));
    }
    if (ports.size() != count)
        throw Error("expected " + std::to_string(count) + " ports, got " + std::to_string(ports.size()));
    return ports;
}

class Generator {
public:
    explicit Generator(const Options& options) : o_(options), epoll_fd_(make_epoll()) {
        // Per call, a socket per phone, as real phones have. Shared: one socket for every caller
        // phone and one for every agent phone, with batched sends, so that the generator stays
        // far cheaper than the box it loads (the box does the same work either way).
        const std::size_t sockets = o_.shared_sockets ? 2 : 2 * o_.calls;
        for (std::size_t i = 0; i < sockets; ++i) {
            const int fd = open_socket(o_.host, epoll_fd_, i);
            const int on = 1;
            if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) != 0) fail_errno("SO_TIMESTAMPNS");
            if (o_.shared_sockets) grow_buffers(fd);
            sockets_.push_back(fd);
        }
    }

    int run() {
        // Phones 2i and 2i+1 are call i's caller and agent; each sends to its own leg on the box.
        std::vector<int> phones;
        for (std::size_t phone = 0; phone < 2 * o_.calls; ++phone) phones.push_back(socket_of(phone));
        print_ports("phones", phones);
        for (std::uint16_t port : read_ports("legs", phones.size())) targets_.push_back(ipv4(o_.host, port));
        build_templates();
        const std::int64_t slot_ns = kPacketNs / static_cast<std::int64_t>(kPhases);
        const std::int64_t warmup_ticks = o_.warmup_ms / 20;
        window_first_ = static_cast<std::uint32_t>(warmup_ticks);
        window_end_ = static_cast<std::uint32_t>(warmup_ticks + o_.duration_ms / 20);
        const std::int64_t start = now_ns() + 50'000'000;
        const int timer = start_timer(start, slot_ns);
        std::uint64_t slot = 0;
        std::int64_t window_cpu = 0;
        std::int64_t window_wall = 0;
        const std::uint64_t last_slot = std::uint64_t{window_end_} * kPhases;
        std::vector<epoll_event> ready(256);
        bool sending = true;
        std::int64_t drain_until = 0;
        for (;;) {
            const int n = epoll_wait(epoll_fd_, ready.data(), static_cast<int>(ready.size()), sending ? -1 : 10);
            if (n < 0 && errno != EINTR) fail_errno("epoll_wait");
            for (int e = 0; e < n; ++e) {
                const std::uint64_t index = ready[static_cast<std::size_t>(e)].data.u64;
                if (index == kTimerIndex) {
                    std::uint64_t expirations = 0;
                    if (read(timer, &expirations, sizeof expirations) != sizeof expirations) continue;
                    if (expirations > 1) overruns_ += expirations - 1;
                    for (std::uint64_t k = 0; k < expirations && sending; ++k, ++slot) {
                        const auto tick = static_cast<std::uint32_t>(slot / kPhases);
                        if (slot % kPhases == 0 && tick == window_first_) {
                            window_cpu = cpu_ns();
                            window_wall = now_ns();
                            std::cout << "measuring" << std::endl;
                        }
                        if (slot == last_slot) {
                            window_cpu = cpu_ns() - window_cpu;
                            window_wall = now_ns() - window_wall;
                            std::cout << "done" << std::endl;
                            sending = false;
                            drain_until = now_ns() + o_.drain_ms * 1'000'000;
                            break;
                        }
                        const std::int64_t due = start + static_cast<std::int64_t>(slot) * slot_ns;
                        send_slot(slot, tick, due);
                    }
                } else {
                    receive(sockets_[index]);
                }
            }
            if (!sending && (now_ns() >= drain_until || all_received())) break;
        }
        print_result(window_cpu, window_wall);
        return 0;
    }

private:
    int socket_of(std::size_t phone) const { return sockets_[o_.shared_sockets ? phone % 2 : phone]; }

    // A shared socket takes every call's packets: room for a few ticks of them.
    static void grow_buffers(int fd) {
        for (int option : {SO_RCVBUF, SO_SNDBUF}) {
            const int force = option == SO_RCVBUF ? SO_RCVBUFFORCE : SO_SNDBUFFORCE;
            int size = 16 << 20;
            if (setsockopt(fd, SOL_SOCKET, force, &size, sizeof size) != 0) {
                size = 4 << 20;  // without CAP_NET_ADMIN: what net.core.[rw]mem_max allows
                setsockopt(fd, SOL_SOCKET, option, &size, sizeof size);
            }
        }
    }

    void build_templates() {
        templates_.assign(2 * o_.calls, {});
        for (std::size_t phone = 0; phone < templates_.size(); ++phone) {
            auto& p = templates_[phone];
            p.fill(0xD5);  // A-law silence
            p[0] = 0x80;   // RTP version 2
            p[1] = kPayloadTypePcma;
            put32(&p[8], static_cast<std::uint32_t>(phone + 1));  // SSRC
            std::uint8_t* payload = &p[kRtpHeader];
            put32(payload, kMagic);
            put32(payload + 4, static_cast<std::uint32_t>(phone / 2));  // call
            payload[8] = static_cast<std::uint8_t>(phone % 2);          // 0: caller to agent
        }
    }

    // A timer firing every slot_ns from `start` (CLOCK_MONOTONIC), in the epoll set.
    int start_timer(std::int64_t start, std::int64_t slot_ns) {
        const int timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (timer < 0) fail_errno("timerfd_create");
        // Absolute times on one grid: a late wake-up never shifts the later ones.
        itimerspec spec{};
        spec.it_value = {static_cast<time_t>(start / 1'000'000'000), static_cast<long>(start % 1'000'000'000)};
        spec.it_interval = {0, static_cast<long>(slot_ns)};
        if (timerfd_settime(timer, TFD_TIMER_ABSTIME, &spec, nullptr) != 0) fail_errno("timerfd_settime");
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.u64 = kTimerIndex;
        if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, timer, &event) != 0) fail_errno("epoll_ctl timer");
        return timer;
    }

    // Phase p of each 20 ms sends calls p, p + kPhases, ...
    void send_slot(std::uint64_t slot, std::uint32_t tick, std::int64_t due) {
        const std::size_t phase = slot % kPhases;
        const bool in_window = tick >= window_first_ && tick < window_end_;
        max_send_lag_ns_ = std::max(max_send_lag_ns_, now_ns() - due);
        for (std::size_t side = 0; side < 2; ++side) {
            for (std::size_t call = phase; call < o_.calls; call += kPhases) {
                stage(2 * call + side, tick);
                if (!o_.shared_sockets) flush(socket_of(2 * call + side), side, in_window);
            }
            if (o_.shared_sockets) flush(sockets_[side], side, in_window);
        }
    }

    // Number and stamp one phone's packet and queue it for the next flush.
    void stage(std::size_t phone, std::uint32_t tick) {
        auto& p = templates_[phone];
        const auto sequence = static_cast<std::uint16_t>(tick);
        p[2] = static_cast<std::uint8_t>(sequence >> 8);
        p[3] = static_cast<std::uint8_t>(sequence);
        put32(&p[4], tick * static_cast<std::uint32_t>(kPayload));
        std::uint8_t* payload = &p[kRtpHeader];
        put32(payload + 12, tick);
        put64(payload + 16, static_cast<std::uint64_t>(wall_ns()));
        iov_.push_back({p.data(), p.size()});
        mmsghdr header{};
        header.msg_hdr.msg_name = &targets_[phone];
        header.msg_hdr.msg_namelen = sizeof(sockaddr_in);
        outgoing_.push_back(header);
    }

    void flush(int fd, std::size_t side, bool in_window) {
        for (std::size_t i = 0; i < outgoing_.size(); ++i) {
            outgoing_[i].msg_hdr.msg_iov = &iov_[i];
            outgoing_[i].msg_hdr.msg_iovlen = 1;
        }
        std::size_t done = 0;
        while (done < outgoing_.size()) {
            const auto count = static_cast<unsigned>(std::min<std::size_t>(outgoing_.size() - done, 1024));
            const int sent = sendmmsg(fd, &outgoing_[done], count, 0);
            if (sent <= 0) {
                send_errors_ += outgoing_.size() - done;  // a full socket buffer: these are not sent
                break;
            }
            if (in_window) directions_[side].sent += static_cast<unsigned>(sent);
            done += static_cast<unsigned>(sent);
        }
        outgoing_.clear();
        iov_.clear();
    }

    void receive(int fd) {
        while (const int got = batch_.receive(fd, true)) {
            const std::int64_t now = wall_ns();
            for (int i = 0; i < got; ++i) {
                const auto k = static_cast<std::size_t>(i);
                account(batch_.data[k].data(), batch_.headers[k].msg_len, batch_.arrival_ns(k, now));
            }
            if (static_cast<std::size_t>(got) < kBatch) break;
        }
    }

    bool all_received() const {
        return std::all_of(directions_.begin(), directions_.end(),
                           [](const Direction& d) { return d.received >= d.sent; });
    }

    // `arrived` is when the kernel queued the packet on the phone's socket: a busy generator
    // that reads it later does not count against the box.
    void account(const std::uint8_t* packet, std::size_t size, std::int64_t arrived) {
        // The box's RTCP and anything not ours is counted and otherwise ignored.
        if (size != kPacket || (packet[0] & 0xC0) != 0x80 || get32(packet + kRtpHeader) != kMagic) {
            ++foreign_;
            return;
        }
        const std::uint8_t* payload = packet + kRtpHeader;
        const std::uint8_t direction = payload[8];
        const std::uint32_t tick = get32(payload + 12);
        if (direction > 1 || tick < window_first_ || tick >= window_end_) return;
        Direction& d = directions_[direction];
        const std::int64_t transit = arrived - static_cast<std::int64_t>(get64(payload + 16));
        ++d.received;
        if (transit > o_.late_ms * 1'000'000) ++d.late;
        d.transit_us.push_back(static_cast<std::uint32_t>(std::max<std::int64_t>(transit, 0) / 1000));
    }

    void print_result(std::int64_t window_cpu, std::int64_t window_wall) {
        std::printf(
            "{\"mode\": \"generate\", \"calls\": %zu, \"phone_sockets\": \"%s\", \"phases\": %zu, \"late_threshold_ms\": %lld, "
            "\"window_s\": %.3f, \"generator_cpu_s\": %.3f, \"timer_overruns\": %llu, \"max_send_lag_us\": %lld, "
            "\"send_errors\": %llu, \"foreign\": %llu, \"caller_to_agent\": %s, \"agent_to_caller\": %s}\n",
            o_.calls, o_.shared_sockets ? "shared" : "per-call", kPhases, static_cast<long long>(o_.late_ms), static_cast<double>(window_wall) / 1e9,
            static_cast<double>(window_cpu) / 1e9, static_cast<unsigned long long>(overruns_),
            static_cast<long long>(max_send_lag_ns_ / 1000), static_cast<unsigned long long>(send_errors_),
            static_cast<unsigned long long>(foreign_), direction_json(directions_[0]).c_str(),
            direction_json(directions_[1]).c_str());
        std::fflush(stdout);
    }

    Options o_;
    int epoll_fd_;
    std::vector<int> sockets_;
    std::vector<mmsghdr> outgoing_;
    std::vector<iovec> iov_;
    std::vector<sockaddr_in> targets_;
    std::vector<std::array<std::uint8_t, kPacket>> templates_;
    std::array<Direction, 2> directions_{};  // caller to agent, agent to caller
    Batch batch_;
    std::uint32_t window_first_ = 0;
    std::uint32_t window_end_ = 0;
    std::uint64_t overruns_ = 0;
    std::int64_t max_send_lag_ns_ = 0;
    std::uint64_t send_errors_ = 0;
    std::uint64_t foreign_ = 0;
};

// ---------------------------------------------------------------- command line

void usage() {
    std::cerr << "usage:\n"
                 "  loadgen generate --calls N [--host 127.0.0.1] [--cpu C] [--warmup-ms 1000]\n"
                 "                   [--duration-ms 10000] [--drain-ms 500] [--late-ms 20]\n"
                 "                   [--phone-sockets per-call|shared]\n"
                 "    prints 'phones P1 P2 ...' (caller and agent phone of each call), reads\n"
                 "    'legs L1 L2 ...' (the box's port for each phone), sends for warmup + duration,\n"
                 "    prints 'measuring' and 'done' around the window, then a JSON result.\n"
                 "  loadgen echo --legs M [--host 127.0.0.1] [--cpu C]\n"
                 "    prints 'legs P1 P2 ...' and echoes every datagram to its source until stdin closes.\n";
}

std::int64_t number(const std::string& flag, const char* text, std::int64_t low, std::int64_t high) {
    char* end = nullptr;
    errno = 0;
    const long long value = std::strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < low || value > high)
        throw Error(flag + " must be an integer in " + std::to_string(low) + ".." + std::to_string(high) +
                    ": got '" + text + "'");
    return value;
}

Options parse(int argc, char** argv) {
    if (argc < 2) throw Error("give a mode: generate or echo");
    Options o;
    o.mode = argv[1];
    if (o.mode != "generate" && o.mode != "echo") throw Error("unknown mode '" + o.mode + "'");
    for (int i = 2; i < argc; i += 2) {
        const std::string flag = argv[i];
        if (i + 1 >= argc) throw Error(flag + " needs a value");
        const char* value = argv[i + 1];
        if (flag == "--host") o.host = value;
        else if (flag == "--calls") o.calls = static_cast<std::size_t>(number(flag, value, 1, 100000));
        else if (flag == "--legs") o.legs = static_cast<std::size_t>(number(flag, value, 1, 200000));
        else if (flag == "--cpu") o.cpu = static_cast<int>(number(flag, value, -1, CPU_SETSIZE - 1));
        else if (flag == "--warmup-ms") o.warmup_ms = number(flag, value, 0, 3'600'000);
        else if (flag == "--duration-ms") o.duration_ms = number(flag, value, 20, 3'600'000);
        else if (flag == "--drain-ms") o.drain_ms = number(flag, value, 0, 60'000);
        else if (flag == "--late-ms") o.late_ms = number(flag, value, 1, 10'000);
        else if (flag == "--phone-sockets") {
            const std::string kind = value;
            if (kind != "per-call" && kind != "shared") throw Error("--phone-sockets is per-call or shared");
            o.shared_sockets = kind == "shared";
        }
        else throw Error("unknown option " + flag);
    }
    if (o.mode == "generate" && o.calls == 0) throw Error("generate needs --calls");
    if (o.mode == "echo" && o.legs == 0) throw Error("echo needs --legs");
    return o;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Options options = parse(argc, argv);
        raise_file_limit();
        pin_to_cpu(options.cpu);
        if (options.mode == "echo") return run_echo(options.host, options.legs);
        Generator generator(options);
        return generator.run();
    } catch (const Error& e) {
        std::cerr << "loadgen: " << e.what() << "\n";
        usage();
        return 2;
    }
}
