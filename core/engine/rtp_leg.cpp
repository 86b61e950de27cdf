#include "engine/rtp_leg.h"

#include <unistd.h>

#include <algorithm>
#include <array>

#include "engine/io.h"
#include "rtp/emodel.h"
#include "rtp/packet.h"
#include "rtp/rtcp.h"

namespace callbox::engine {

namespace {

// A new source address is trusted after this many valid RTP packets in a row
// from it, so one stray packet cannot steal a call's media.
constexpr int kLatchAfter = 2;
// Nominal one-way delay of packetization (one 20 ms frame).
constexpr double kPacketizationMs = 20.0;
// Without a jitter buffer of our own, the far end's is guessed at twice the
// interarrival jitter plus a 20 ms minimum.
constexpr double kMinimalBufferMs = 20.0;
constexpr std::uint64_t kNtpUnixOffset = 2208988800ULL;

std::uint64_t ntp_now() {
    const auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch).count();
    const auto seconds = static_cast<std::uint64_t>(ns / 1'000'000'000) + kNtpUnixOffset;
    const auto fraction = (static_cast<std::uint64_t>(ns % 1'000'000'000) << 32) / 1'000'000'000;
    return (seconds << 32) | fraction;
}

std::uint32_t ntp_middle(std::uint64_t ntp) { return static_cast<std::uint32_t>(ntp >> 16); }

std::uint32_t in_units_of_65536th(Clock::duration d) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    return static_cast<std::uint32_t>((static_cast<std::uint64_t>(std::max<std::int64_t>(us, 0)) << 16) /
                                      1'000'000);
}

// RTCP and RTP on one port are told apart by the second octet (RFC 5761 4).
bool looks_like_rtcp(std::span<const std::uint8_t> bytes) {
    return bytes.size() >= 2 && bytes[1] >= 192 && bytes[1] <= 223;
}

sockaddr_in with_port(sockaddr_in address, std::uint16_t port) {
    address.sin_port = htons(port);
    return address;
}

}  // namespace

RtpLeg::RtpLeg(LegId id, RtpLegConfig config, int rtp_fd, int rtcp_fd, Clock::time_point now)
    : Leg(id, config.codec, config.audio),
      config_(std::move(config)),
      rtp_fd_(rtp_fd),
      rtcp_fd_(rtcp_fd),
      random_(std::random_device{}()),
      local_ssrc_(static_cast<std::uint32_t>(random_())),
      last_rtp_at_(now),
      next_report_at_(now + next_report_delay()) {}

RtpLeg::~RtpLeg() {
    close(rtp_fd_);
    if (rtcp_fd_ >= 0) close(rtcp_fd_);
}

std::vector<int> RtpLeg::fds() const {
    if (rtcp_fd_ >= 0) return {rtp_fd_, rtcp_fd_};
    return {rtp_fd_};
}

Clock::duration RtpLeg::next_report_delay() {
    // RFC 3550 6.3.1: a random factor in [0.5, 1.5] keeps reports from synchronising.
    std::uniform_real_distribution<double> factor(0.5, 1.5);
    return std::chrono::duration_cast<Clock::duration>(config_.rtcp_interval * factor(random_));
}

std::uint32_t RtpLeg::to_timestamp_units(Clock::time_point t) const {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
    return static_cast<std::uint32_t>(static_cast<std::uint64_t>(us) * codec().clock_rate / 1'000'000);
}

void RtpLeg::set_remote(const sockaddr_in& rtp, const sockaddr_in& rtcp, Clock::time_point now) {
    has_remote_ = true;
    remote_rtp_ = rtp;
    remote_rtcp_ = rtcp;
    latch_candidate_.reset();
    latch_candidate_packets_ = 0;
    last_rtp_at_ = now;
}

void RtpLeg::set_hold(bool on_hold, Clock::time_point now) {
    on_hold_ = on_hold;
    // Coming off hold starts a fresh timeout window: the far end may need a moment.
    if (!on_hold) last_rtp_at_ = now;
}

void RtpLeg::on_readable(int fd, Clock::time_point now) {
    Inbox& inbox = host().inbox();
    // A few batches per wake-up; level-triggered epoll brings us back for the rest,
    // so one busy leg cannot starve the others on this worker.
    for (int round = 0; round < 4; ++round) {
        const std::size_t n = inbox.receive(fd);
        for (std::size_t i = 0; i < n; ++i) {
            const auto bytes = inbox.data(i);
            if (inbox.truncated(i)) {
                ++malformed_;
            } else if (fd == rtcp_fd_ || (config_.rtcp_mux && looks_like_rtcp(bytes))) {
                on_rtcp(bytes, inbox.source(i), now);
            } else {
                on_rtp(bytes, inbox.source(i), now);
            }
        }
        if (n < kBatch) break;
    }
}

bool RtpLeg::accept_source(const sockaddr_in& from) {
    if (has_remote_ && same_address(from, remote_rtp_)) {
        latch_candidate_.reset();
        latch_candidate_packets_ = 0;
        return true;
    }
    if (latch_candidate_ && same_address(*latch_candidate_, from)) {
        ++latch_candidate_packets_;
    } else {
        latch_candidate_ = from;
        latch_candidate_packets_ = 1;
    }
    // With no remote yet there is nothing to protect: the first packet decides.
    if (has_remote_ && latch_candidate_packets_ < kLatchAfter) return false;
    remote_rtp_ = from;
    remote_rtcp_ = config_.rtcp_mux ? from : with_port(from, static_cast<std::uint16_t>(ntohs(from.sin_port) + 1));
    has_remote_ = true;
    latch_candidate_.reset();
    latch_candidate_packets_ = 0;
    host().post_event({"latched", id(), format_address(from)});
    return true;
}

void RtpLeg::start_new_source(std::uint32_t ssrc) {
    if (has_remote_ssrc_) {
        const rtp::ReceiveSnapshot s = source_.snapshot();
        earlier_sources_.expected += s.expected;
        earlier_sources_.lost += s.lost;
        earlier_sources_.duplicates += s.duplicates;
        earlier_sources_.reordered += s.reordered;
        source_ = rtp::ReceiveStats{};
        ++stream_generation_;
    }
    has_remote_ssrc_ = true;
    remote_ssrc_ = ssrc;
}

void RtpLeg::on_rtp(std::span<const std::uint8_t> bytes, const sockaddr_in& from, Clock::time_point now) {
    rtp::Packet packet;
    if (rtp::parse(bytes, packet) != rtp::ParseError::none) {
        ++malformed_;
        return;
    }
    if (!accept_source(from)) {
        ++foreign_;
        return;
    }
    const rtp::Header& h = packet.header;
    if (!has_remote_ssrc_ || h.ssrc != remote_ssrc_) start_new_source(h.ssrc);
    ++packets_received_;
    octets_received_ += packet.payload.size();
    source_.update(h.sequence, h.timestamp, to_timestamp_units(now));
    last_rtp_at_ = now;
    if (timed_out_) {
        timed_out_ = false;
        host().post_event({"rtp_resumed", id(), {}});
    }
    deliver({packet.payload, h.payload_type, h.timestamp, h.sequence, h.marker,
             (id() << 32) | stream_generation_},
            now);
}

void RtpLeg::on_rtcp(std::span<const std::uint8_t> bytes, const sockaddr_in& from, Clock::time_point now) {
    rtp::RtcpReport report;
    if (rtp::parse_rtcp(bytes, report) != nullptr) {
        ++malformed_;
        return;
    }
    ++rtcp_received_;
    // RTCP follows the far end's own source port, but only from the host RTP comes from.
    if (has_remote_ && from.sin_addr.s_addr == remote_rtp_.sin_addr.s_addr) remote_rtcp_ = from;
    if (report.has_sender_info) {
        last_sr_ = ntp_middle(report.sender.ntp_timestamp);
        last_sr_at_ = now;
    }
    for (std::size_t i = 0; i < report.block_count; ++i) {
        const rtp::ReportBlock& b = report.blocks[i];
        if (b.ssrc != local_ssrc_) continue;
        remote_fraction_lost_ = b.fraction_lost;
        remote_cumulative_lost_ = b.cumulative_lost;
        remote_jitter_ = b.jitter;
        if (b.last_sr != 0) {
            // RFC 3550 6.4.1: RTT = A - LSR - DLSR, in 1/65536 s.
            const std::uint32_t rtt = ntp_middle(ntp_now()) - b.last_sr - b.delay_since_last_sr;
            if (rtt < 0x80000000u) rtt_ms_ = rtt * 1000.0 / 65536.0;
        }
    }
    if (report.bye) host().post_event({"bye", id(), {}});
}

void RtpLeg::send_frame(const Frame& frame, Clock::time_point now) {
    if (!has_remote_) return;
    const bool new_stream = !has_sent_ || frame.stream != out_stream_;
    if (new_stream) {
        // Continue our own numbering where the previous stream left off, with the
        // timestamp advanced by the time that passed, so the far end sees one stream.
        std::uint16_t next_seq = static_cast<std::uint16_t>(random_());
        std::uint32_t next_ts = static_cast<std::uint32_t>(random_());
        if (has_sent_) {
            next_seq = static_cast<std::uint16_t>(last_out_seq_ + 1);
            const std::uint32_t elapsed = to_timestamp_units(now) - to_timestamp_units(last_send_at_);
            next_ts = last_out_ts_ + std::max<std::uint32_t>(elapsed, 1);
        }
        seq_offset_ = static_cast<std::uint16_t>(next_seq - frame.sequence);
        ts_offset_ = next_ts - frame.timestamp;
        out_stream_ = frame.stream;
    }
    rtp::Header h;
    h.ssrc = local_ssrc_;
    h.payload_type = frame.payload_type;
    h.sequence = static_cast<std::uint16_t>(frame.sequence + seq_offset_);
    h.timestamp = frame.timestamp + ts_offset_;
    h.marker = frame.marker || new_stream;
    Outbox& outbox = host().outbox();
    const std::size_t size = rtp::build(h, {}, frame.payload, outbox.reserve());
    if (size == 0) return;  // larger than a datagram: nothing sensible to send
    outbox.commit(rtp_fd_, remote_rtp_, size);
    ++packets_sent_;
    octets_sent_ += frame.payload.size();
    last_send_at_ = now;
    if (!has_sent_ || static_cast<std::int16_t>(h.sequence - last_out_seq_) > 0) {
        last_out_seq_ = h.sequence;
        last_out_ts_ = h.timestamp;
    }
    has_sent_ = true;
}

void RtpLeg::send_report(Clock::time_point now) {
    std::array<rtp::ReportBlock, 1> blocks{};
    std::size_t block_count = 0;
    if (source_.snapshot().validated) {
        const rtp::LossReport loss = source_.report();
        rtp::ReportBlock& b = blocks[block_count++];
        b.ssrc = remote_ssrc_;
        b.fraction_lost = loss.fraction_lost;
        b.cumulative_lost = loss.cumulative_lost;
        b.extended_highest = loss.extended_highest;
        b.jitter = loss.jitter;
        b.last_sr = last_sr_;
        b.delay_since_last_sr = last_sr_ != 0 ? in_units_of_65536th(now - last_sr_at_) : 0;
    }
    rtp::SenderInfo sender;
    const bool sent_since_last = packets_sent_ > packets_sent_at_last_report_;
    if (sent_since_last) {
        sender.ntp_timestamp = ntp_now();
        sender.rtp_timestamp = last_out_ts_ + (to_timestamp_units(now) - to_timestamp_units(last_send_at_));
        sender.packet_count = static_cast<std::uint32_t>(packets_sent_);
        sender.octet_count = static_cast<std::uint32_t>(octets_sent_);
        packets_sent_at_last_report_ = packets_sent_;
    }
    Outbox& outbox = host().outbox();
    const std::size_t size = rtp::build_rtcp(local_ssrc_, sent_since_last ? &sender : nullptr,
                                             std::span(blocks).first(block_count), config_.cname,
                                             outbox.reserve());
    if (size == 0) return;
    outbox.commit(rtcp_fd_ >= 0 ? rtcp_fd_ : rtp_fd_, remote_rtcp_, size);
    ++rtcp_sent_;
}

void RtpLeg::on_tick(Clock::time_point now) {
    const auto timeout = config_.rtp_timeout;
    if (timeout.count() > 0 && !on_hold_ && !timed_out_ && now - last_rtp_at_ >= timeout) {
        timed_out_ = true;
        host().post_event({"rtp_timeout", id(), {}});
    }
    if (now >= next_report_at_) {
        if (has_remote_) send_report(now);
        next_report_at_ = now + next_report_delay();
    }
}

LegStats RtpLeg::stats() const {
    LegStats s;
    const rtp::ReceiveSnapshot current = source_.snapshot();
    s.local_ssrc = local_ssrc_;
    s.remote_ssrc = remote_ssrc_;
    if (has_remote_) s.remote = format_address(remote_rtp_);
    s.packets_received = packets_received_;
    s.octets_received = octets_received_;
    s.packets_sent = packets_sent_;
    s.octets_sent = octets_sent_;
    s.malformed = malformed_;
    s.foreign = foreign_;
    s.expected = earlier_sources_.expected + current.expected;
    s.lost = earlier_sources_.lost + current.lost;
    s.duplicates = earlier_sources_.duplicates + current.duplicates;
    s.reordered = earlier_sources_.reordered + current.reordered;
    const double rate = codec().clock_rate;
    s.jitter_ms = current.jitter * 1000.0 / rate;
    s.rtcp_sent = rtcp_sent_;
    s.rtcp_received = rtcp_received_;
    s.rtt_ms = rtt_ms_;
    s.remote_fraction_lost = remote_fraction_lost_;
    s.remote_cumulative_lost = remote_cumulative_lost_;
    s.remote_jitter_ms = remote_jitter_ * 1000.0 / rate;
    const double loss_percent = s.expected > 0 && s.lost > 0 ? 100.0 * s.lost / s.expected : 0.0;
    s.jitter_buffer = jitter_stats();
    // The jitter buffer's measured delay when the far end hears through it
    // (mean waiting time of played frames, else its target), else the guess:
    // a relay's audio, recorded or not, does not wait in ours.
    double buffer_ms = 2 * s.jitter_ms + kMinimalBufferMs;
    if (const auto& jb = s.jitter_buffer; jb && conversation_buffered()) {
        const std::int64_t played = jb->normal + jb->merged + jb->accelerated;
        buffer_ms = played > 0 ? static_cast<double>(jb->waiting_ms_total) / static_cast<double>(played)
                               : static_cast<double>(jb->target_delay_ms);
    }
    const double delay = (rtt_ms_ >= 0 ? rtt_ms_ / 2 : 0.0) + buffer_ms + kPacketizationMs;
    const rtp::CodecImpairment* impairment = rtp::codec_impairment(codec().name);
    const rtp::Quality q = rtp::e_model(delay, loss_percent, *impairment);
    s.r_factor = q.r_factor;
    s.mos = q.mos;
    return s;
}

}  // namespace callbox::engine
