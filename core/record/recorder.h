// The call recorder: one WAV file per call, fed a 20 ms frame per tick.
//
// A media worker pushes frames into a Recording's single-producer/single-
// consumer ring and never waits: a full ring drops the frame and counts it.
// One writer thread per RecorderService drains every ring, writes the file,
// and keeps the WAV header's sizes at most kHeaderInterval behind the data,
// so a killed process leaves a file that plays up to that point.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace callbox::record {

// Bad arguments or a file that cannot be written; the message names the problem.
class RecordError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

enum class Layout { stereo, mono };

constexpr int kFrameMs = 20;
// The header's sizes are rewritten this often while data arrives (bound on what a kill loses).
constexpr std::chrono::milliseconds kHeaderInterval{500};
// The writer syncs its recordings' filesystems this often: bounds what a
// power loss (not a process kill) loses.
constexpr std::chrono::seconds kSyncInterval{5};

struct RecordingSettings {
    std::string path;
    int sample_rate = 8000;
    Layout layout = Layout::stereo;
    std::size_t ring_frames = 250;
};

struct RecordingInfo {
    std::string path;
    int sample_rate = 0;
    int channels = 0;
    std::uint64_t frames_written = 0;  // ticks in the file, paused ones included
    std::uint64_t frames_dropped = 0;  // pushed into a full ring
    std::uint64_t frames_paused = 0;   // written as silence
    std::uint64_t pauses = 0;          // pause markers
};

class Recording {
public:
    // Opens (creates or truncates) the file and writes its header; throws RecordError.
    explicit Recording(RecordingSettings settings);
    ~Recording();
    Recording(const Recording&) = delete;
    Recording& operator=(const Recording&) = delete;

    std::size_t frame_samples() const { return frame_samples_; }

    // Producer side (one thread): one tick in, never block. False if dropped.
    // The frame enters the ring already in the file's layout (interleaved, or
    // summed for mono), so the writer hands ring memory straight to pwrite.
    bool push(const std::int16_t* left, const std::int16_t* right);
    void pause();
    void resume();
    bool paused() const { return paused_.load(std::memory_order_relaxed); }

    // Writer side: drain the ring into the file; patch the header when due.
    void drain(std::chrono::steady_clock::time_point now);
    // Writer side: the filesystem the file is on, and a descriptor on it (for syncfs).
    dev_t device() const { return device_; }
    int fd() const { return fd_; }
    // Writer side: drain, write exact sizes, sync and close the file.
    RecordingInfo finish();
    // Writer side: the file could not be written; stop, and let finish() rethrow.
    void fail(std::exception_ptr error) { failure_ = std::move(error); }

private:
    std::int16_t* slot(std::size_t index) { return ring_.get() + index * slot_samples_; }
    // Frames [first, first + count) of the ring, which do not wrap, to the file.
    void write_frames(std::size_t first, std::size_t count);
    void write_header();
    void write_all(const void* data, std::size_t size, off_t offset);

    RecordingSettings settings_;
    std::size_t frame_samples_;
    int channels_;
    std::size_t slot_samples_;  // one frame in the file's layout: frame_samples_ * channels_
    int fd_ = -1;
    dev_t device_ = 0;
    // Aligned to a cache line, so each slot (640 or 1280 bytes) is whole lines
    // for push()'s streaming stores.
    struct FreeAligned {
        void operator()(std::int16_t* p) const { ::operator delete[](p, std::align_val_t{64}); }
    };
    std::unique_ptr<std::int16_t[], FreeAligned> ring_;
    std::size_t capacity_;
    // head_ is written by the producer, tail_ by the writer; each on its own cache line.
    alignas(64) std::atomic<std::size_t> head_{0};
    alignas(64) std::atomic<std::size_t> tail_{0};
    std::atomic<std::uint64_t> dropped_{0};
    std::atomic<bool> paused_{false};
    std::atomic<std::uint64_t> pauses_{0};
    std::atomic<std::uint64_t> frames_paused_{0};  // accepted into the ring while paused
    // Writer-only state.
    std::uint64_t frames_written_ = 0;
    std::uint64_t frames_in_header_ = 0;
    std::chrono::steady_clock::time_point last_header_{};
    std::exception_ptr failure_;
};

// Owns the writer thread shared by all its recordings.
class RecorderService {
public:
    explicit RecorderService(std::chrono::milliseconds drain_interval);
    ~RecorderService();
    RecorderService(const RecorderService&) = delete;
    RecorderService& operator=(const RecorderService&) = delete;

    std::shared_ptr<Recording> start(RecordingSettings settings);
    // Finishes the recordings still open and ends the writer thread (idempotent).
    void stop();
    // Hands the recording to the writer to finish; blocks until the file is closed.
    RecordingInfo close(const std::shared_ptr<Recording>& recording);
    std::size_t active() const;

private:
    struct Closing {
        std::shared_ptr<Recording> recording;
        std::promise<RecordingInfo> done;
    };
    void run();
    // One syncfs per filesystem that holds open recordings, instead of an
    // fdatasync per file: each of those flushed the disk's cache, hundreds
    // of times a second with a thousand calls recorded.
    static void sync(const std::vector<std::shared_ptr<Recording>>& recordings);

    std::chrono::milliseconds drain_interval_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::vector<std::shared_ptr<Recording>> recordings_;
    std::vector<Closing> closing_;
    bool stopping_ = false;
    std::thread writer_;
};

// Converts a 16-bit PCM WAV to CBR MP3 with LAME. `mono` downmixes a stereo
// input; otherwise the output is joint stereo (a stereo input is required).
// Returns the MP3 size in bytes; throws RecordError.
std::size_t wav_to_mp3(const std::string& wav_path, const std::string& mp3_path, int bitrate_kbps, bool mono);

}  // namespace callbox::record
