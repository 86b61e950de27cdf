// An RTP leg: a local UDP port pair (or one port with rtcp-mux), symmetric RTP
// latching, RFC 3550 statistics, periodic RTCP SR/RR, hold-aware RTP timeout,
// and per-leg rewriting of SSRC, sequence and timestamp so the far end sees
// one continuous stream whatever feeds the leg.
#pragma once

#include <netinet/in.h>

#include <optional>
#include <random>

#include "engine/leg.h"
#include "rtp/stats.h"

namespace callbox::engine {

struct RtpLegConfig {
    CodecSpec codec;
    AudioOptions audio;
    bool rtcp_mux = false;
    std::chrono::milliseconds rtp_timeout{0};  // 0: never time out
    std::chrono::milliseconds rtcp_interval{5000};
    std::string cname;
};

class RtpLeg final : public Leg {
public:
    // Takes ownership of the bound sockets (rtcp_fd is -1 with rtcp-mux).
    RtpLeg(LegId id, RtpLegConfig config, int rtp_fd, int rtcp_fd, Clock::time_point now);
    ~RtpLeg() override;

    std::vector<int> fds() const override;
    void on_readable(int fd, Clock::time_point now) override;
    void on_tick(Clock::time_point now) override;
    void send_frame(const Frame& frame, Clock::time_point now) override;
    void set_hold(bool on_hold, Clock::time_point now) override;
    LegStats stats() const override;

    // Where to send; RTP latches away from it once the far end is seen elsewhere.
    void set_remote(const sockaddr_in& rtp, const sockaddr_in& rtcp, Clock::time_point now);

private:
    void on_rtp(std::span<const std::uint8_t> bytes, const sockaddr_in& from, Clock::time_point now);
    void on_rtcp(std::span<const std::uint8_t> bytes, const sockaddr_in& from, Clock::time_point now);
    bool accept_source(const sockaddr_in& from);
    void start_new_source(std::uint32_t ssrc);
    void send_report(Clock::time_point now);
    std::uint32_t to_timestamp_units(Clock::time_point t) const;
    Clock::duration next_report_delay();

    RtpLegConfig config_;
    int rtp_fd_;
    int rtcp_fd_;
    std::mt19937 random_;
    std::uint32_t local_ssrc_;

    bool has_remote_ = false;
    sockaddr_in remote_rtp_{};
    sockaddr_in remote_rtcp_{};
    std::optional<sockaddr_in> latch_candidate_;
    int latch_candidate_packets_ = 0;

    // Receive side.
    rtp::ReceiveStats source_;
    bool has_remote_ssrc_ = false;
    std::uint32_t remote_ssrc_ = 0;
    std::uint32_t stream_generation_ = 0;
    rtp::ReceiveSnapshot earlier_sources_{};  // totals of sources before an SSRC change
    std::uint64_t packets_received_ = 0;
    std::uint64_t octets_received_ = 0;
    std::uint64_t malformed_ = 0;
    std::uint64_t foreign_ = 0;
    Clock::time_point last_rtp_at_;
    bool timed_out_ = false;
    bool on_hold_ = false;

    // Send side: the mapping from the current input stream to our own numbering.
    bool has_sent_ = false;
    std::uint64_t out_stream_ = 0;
    std::uint16_t seq_offset_ = 0;
    std::uint32_t ts_offset_ = 0;
    std::uint16_t last_out_seq_ = 0;
    std::uint32_t last_out_ts_ = 0;
    Clock::time_point last_send_at_;
    std::uint64_t packets_sent_ = 0;
    std::uint64_t octets_sent_ = 0;
    std::uint64_t packets_sent_at_last_report_ = 0;

    // RTCP.
    Clock::time_point next_report_at_;
    std::uint64_t rtcp_sent_ = 0;
    std::uint64_t rtcp_received_ = 0;
    std::uint32_t last_sr_ = 0;  // middle 32 bits of the far end's last SR NTP time
    Clock::time_point last_sr_at_;
    double rtt_ms_ = -1;
    int remote_fraction_lost_ = -1;
    std::int64_t remote_cumulative_lost_ = 0;
    std::uint32_t remote_jitter_ = 0;
};

}  // namespace callbox::engine
