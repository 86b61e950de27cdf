#include "record/recorder.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

namespace callbox::record {

namespace {

constexpr std::size_t kHeaderBytes = 44;

void put_u16(std::uint8_t* p, std::uint32_t v) {
    p[0] = static_cast<std::uint8_t>(v);
    p[1] = static_cast<std::uint8_t>(v >> 8);
}

void put_u32(std::uint8_t* p, std::uint32_t v) {
    put_u16(p, v & 0xFFFF);
    put_u16(p + 2, v >> 16);
}

std::string errno_text(const std::string& what, const std::string& path) {
    return what + " '" + path + "': " + std::strerror(errno);
}

}  // namespace

Recording::Recording(RecordingSettings settings)
    : settings_(std::move(settings)),
      frame_samples_(static_cast<std::size_t>(settings_.sample_rate) * kFrameMs / 1000),
      channels_(settings_.layout == Layout::stereo ? 2 : 1),
      slot_samples_(frame_samples_ * static_cast<std::size_t>(channels_)),
      capacity_(settings_.ring_frames) {
    if (settings_.sample_rate != 8000 && settings_.sample_rate != 16000) {
        throw RecordError("sample_rate must be 8000 or 16000: got " + std::to_string(settings_.sample_rate));
    }
    if (capacity_ < 1 || capacity_ > 100000) {
        throw RecordError("ring_frames must be 1..100000: got " + std::to_string(capacity_));
    }
    fd_ = ::open(settings_.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd_ < 0) throw RecordError(errno_text("cannot open the recording", settings_.path));
    // One slot stays free so that head == tail means empty without a shared counter.
    const std::size_t samples = (capacity_ + 1) * slot_samples_;
    ring_.reset(new (std::align_val_t{64}) std::int16_t[samples]);
    try {
        struct stat file{};
        if (::fstat(fd_, &file) != 0) throw RecordError(errno_text("cannot stat the recording", settings_.path));
        device_ = file.st_dev;
        write_header();
    } catch (...) {
        ::close(fd_);
        throw;
    }
}

Recording::~Recording() {
    if (fd_ >= 0) ::close(fd_);
}

namespace {

// Stereo frames into the ring, interleaved as the file holds them. The ring
// is seconds long, so the slot written now was last touched seconds ago:
// streaming stores write it without first reading it into the cache, and
// without pushing the worker's legs out of it (a thousand recordings write
// 32 MB a second). The writer reads the slot once, for pwrite.
void interleave(const std::int16_t* left, const std::int16_t* right, std::size_t samples, std::int16_t* out) {
    std::size_t i = 0;
#if defined(__SSE2__)
    for (; i + 8 <= samples; i += 8) {
        const __m128i l = _mm_loadu_si128(reinterpret_cast<const __m128i*>(left + i));
        const __m128i r = _mm_loadu_si128(reinterpret_cast<const __m128i*>(right + i));
        _mm_stream_si128(reinterpret_cast<__m128i*>(out + 2 * i), _mm_unpacklo_epi16(l, r));
        _mm_stream_si128(reinterpret_cast<__m128i*>(out + 2 * i + 8), _mm_unpackhi_epi16(l, r));
    }
    // Streaming stores are not ordered with the release that publishes the slot.
    _mm_sfence();
#endif
    for (; i < samples; ++i) {
        out[2 * i] = left[i];
        out[2 * i + 1] = right[i];
    }
}

}  // namespace

bool Recording::push(const std::int16_t* left, const std::int16_t* right) {
    const std::size_t head = head_.load(std::memory_order_relaxed);
    const std::size_t next = head == capacity_ ? 0 : head + 1;
    if (next == tail_.load(std::memory_order_acquire)) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
    std::int16_t* out = slot(head);
    if (paused_.load(std::memory_order_relaxed)) {
        // A paused frame's audio (a card number, say) never enters the ring.
        std::fill_n(out, slot_samples_, std::int16_t{0});
        frames_paused_.fetch_add(1, std::memory_order_relaxed);
    } else if (channels_ == 2) {
        interleave(left, right, frame_samples_, out);
    } else {
        for (std::size_t i = 0; i < frame_samples_; ++i) {
            out[i] = static_cast<std::int16_t>(std::clamp(left[i] + right[i], -32768, 32767));
        }
    }
    head_.store(next, std::memory_order_release);
    return true;
}

void Recording::pause() {
    if (!paused_.exchange(true, std::memory_order_relaxed)) pauses_.fetch_add(1, std::memory_order_relaxed);
}

void Recording::resume() { paused_.store(false, std::memory_order_relaxed); }

void Recording::drain(std::chrono::steady_clock::time_point now) {
    if (failure_) return;
    const std::size_t tail = tail_.load(std::memory_order_relaxed);
    const std::size_t head = head_.load(std::memory_order_acquire);
    // Everything queued in one write (two when it wraps the ring's end).
    if (head < tail) {
        write_frames(tail, capacity_ + 1 - tail);
        write_frames(0, head);
    } else {
        write_frames(tail, head - tail);
    }
    tail_.store(head, std::memory_order_release);
    if (frames_written_ != frames_in_header_ && now - last_header_ >= kHeaderInterval) {
        write_header();
        last_header_ = now;
    }
}

RecordingInfo Recording::finish() {
    if (!failure_) {
        try {
            drain(std::chrono::steady_clock::now());
            write_header();
        } catch (const RecordError&) {
            failure_ = std::current_exception();
        }
    }
    if (failure_) {
        ::close(fd_);
        fd_ = -1;
        std::rethrow_exception(failure_);
    }
    const int synced = ::fsync(fd_);
    const int closed = ::close(fd_);
    fd_ = -1;
    if (synced != 0 || closed != 0) throw RecordError(errno_text("cannot finish the recording", settings_.path));
    return {settings_.path,
            settings_.sample_rate,
            channels_,
            frames_written_,
            dropped_.load(std::memory_order_relaxed),
            frames_paused_.load(std::memory_order_relaxed),
            pauses_.load(std::memory_order_relaxed)};
}

void Recording::write_frames(std::size_t first, std::size_t count) {
    if (count == 0) return;
    const std::size_t frame_bytes = slot_samples_ * sizeof(std::int16_t);
    write_all(slot(first), count * frame_bytes, static_cast<off_t>(kHeaderBytes + frames_written_ * frame_bytes));
    frames_written_ += count;
}

void Recording::write_header() {
    const std::uint32_t block = static_cast<std::uint32_t>(channels_) * 2;
    const std::uint64_t data = frames_written_ * frame_samples_ * block;
    // A WAV cannot say more than 4 GiB; past that the sizes stay at the maximum
    // (about 37 hours of 16 kHz stereo) and players read to the end of the file.
    const auto data32 = static_cast<std::uint32_t>(
        std::min<std::uint64_t>(data, std::numeric_limits<std::uint32_t>::max() - kHeaderBytes));
    std::uint8_t h[kHeaderBytes];
    std::memcpy(h, "RIFF", 4);
    put_u32(h + 4, static_cast<std::uint32_t>(data32 + kHeaderBytes - 8));
    std::memcpy(h + 8, "WAVEfmt ", 8);
    put_u32(h + 16, 16);
    put_u16(h + 20, 1);  // PCM
    put_u16(h + 22, static_cast<std::uint32_t>(channels_));
    put_u32(h + 24, static_cast<std::uint32_t>(settings_.sample_rate));
    put_u32(h + 28, static_cast<std::uint32_t>(settings_.sample_rate) * block);
    put_u16(h + 32, block);
    put_u16(h + 34, 16);
    std::memcpy(h + 36, "data", 4);
    put_u32(h + 40, data32);
    write_all(h, sizeof h, 0);
    frames_in_header_ = frames_written_;
}

void Recording::write_all(const void* data, std::size_t size, off_t offset) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    while (size > 0) {
        const ssize_t n = ::pwrite(fd_, p, size, offset);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) throw RecordError(errno_text("cannot write the recording", settings_.path));
        p += n;
        size -= static_cast<std::size_t>(n);
        offset += n;
    }
}

RecorderService::RecorderService(std::chrono::milliseconds drain_interval) : drain_interval_(drain_interval) {
    if (drain_interval_.count() < 1 || drain_interval_ > kHeaderInterval) {
        throw RecordError("drain_interval_ms must be 1.." + std::to_string(kHeaderInterval.count()) +
                          ": got " + std::to_string(drain_interval_.count()));
    }
    writer_ = std::thread([this] { run(); });
}

RecorderService::~RecorderService() { stop(); }

void RecorderService::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_one();
    if (writer_.joinable()) writer_.join();
}

std::shared_ptr<Recording> RecorderService::start(RecordingSettings settings) {
    auto recording = std::make_shared<Recording>(std::move(settings));
    std::lock_guard lock(mutex_);
    if (stopping_) throw RecordError("the recorder service is closed");
    recordings_.push_back(recording);
    return recording;
}

RecordingInfo RecorderService::close(const std::shared_ptr<Recording>& recording) {
    std::future<RecordingInfo> done;
    {
        std::lock_guard lock(mutex_);
        if (stopping_) throw RecordError("the recorder service is closed; its recordings were finished");
        auto it = std::find(recordings_.begin(), recordings_.end(), recording);
        if (it == recordings_.end()) throw RecordError("the recording is already closed");
        recordings_.erase(it);
        closing_.push_back({recording, {}});
        done = closing_.back().done.get_future();
    }
    wake_.notify_one();
    return done.get();
}

std::size_t RecorderService::active() const {
    std::lock_guard lock(mutex_);
    return recordings_.size();
}

void RecorderService::sync(const std::vector<std::shared_ptr<Recording>>& recordings) {
    std::vector<dev_t> synced;
    for (const auto& recording : recordings) {
        if (std::find(synced.begin(), synced.end(), recording->device()) != synced.end()) continue;
        synced.push_back(recording->device());
        // A failure here is the disk's, and shows at the next write or at finish()'s fsync.
        ::syncfs(recording->fd());
    }
}

void RecorderService::run() {
    // Named so top -H and the benchmarks can tell the writer apart.
    pthread_setname_np(pthread_self(), "callbox-rec");
    // Below the media workers: a drain pass over a thousand recordings takes
    // milliseconds, which a worker must not wait out (under SCHED_FIFO, as
    // the capacity benchmark runs the box, a thread of equal priority is
    // never preempted, and each pass delayed every packet behind it). A
    // batch thread is preempted by any waking worker and never preempts
    // one; 5 s of ring absorbs the writer's waits.
    const sched_param batch{};
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &batch);
    std::vector<std::shared_ptr<Recording>> recordings;
    std::vector<Closing> closing;
    auto last_sync = std::chrono::steady_clock::now();
    for (;;) {
        {
            std::unique_lock lock(mutex_);
            wake_.wait_for(lock, drain_interval_, [this] { return stopping_ || !closing_.empty(); });
            recordings = recordings_;
            closing.swap(closing_);
        }
        const auto now = std::chrono::steady_clock::now();
        for (auto& recording : recordings) {
            // A failing disk stops this file, not the writer: finish() reports it at close.
            try {
                recording->drain(now);
            } catch (const RecordError&) {
                recording->fail(std::current_exception());
            }
        }
        if (now - last_sync >= kSyncInterval) {
            sync(recordings);
            last_sync = now;
        }
        for (auto& c : closing) {
            try {
                c.done.set_value(c.recording->finish());
            } catch (...) {
                c.done.set_exception(std::current_exception());
            }
        }
        closing.clear();
        std::lock_guard lock(mutex_);
        // Recordings still open at shutdown are finished so their files are exact.
        if (stopping_ && closing_.empty()) {
            for (auto& recording : recordings_) {
                try {
                    recording->finish();
                } catch (const RecordError&) {
                    // Nobody is left to tell; the header written last still holds.
                }
            }
            recordings_.clear();
            return;
        }
    }
}

}  // namespace callbox::record
