// Prompts decoded once and shared: a Prompt is immutable 16-bit PCM that any
// number of players on any worker read at once through a shared_ptr, with no
// copy and no lock per frame. The PromptCache decodes each file once and
// re-reads it when the file on disk changes.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "player/wav.h"

namespace callbox::player {

class Prompt : public std::enable_shared_from_this<Prompt> {
public:
    /// Use decode() or PromptCache::load(); Prompts live in shared_ptrs.
    Prompt(std::string name, WavAudio audio);

    /// Decodes a WAV held in memory (an upload, say); PromptError names ``name``.
    static std::shared_ptr<const Prompt> decode(std::string_view name, std::span<const std::uint8_t> file);

    const std::string& name() const { return name_; }
    unsigned sample_rate() const { return audio_.sample_rate; }
    Encoding encoding() const { return audio_.encoding; }
    /// The file's data chunk was cut short by a writer that crashed.
    bool truncated() const { return audio_.truncated; }
    std::span<const std::int16_t> pcm() const { return audio_.pcm; }

    /// The same audio at ``rate`` (8000, 16000 or 48000), resampled once on
    /// the first request and kept for later ones. Safe from any thread; it
    /// takes a lock, so call it when a player is made, not per frame.
    std::shared_ptr<const Prompt> at_rate(unsigned rate) const;

private:
    std::string name_;
    WavAudio audio_;
    mutable std::mutex resampled_mutex_;
    mutable std::array<std::shared_ptr<const Prompt>, 3> resampled_;  // by rate: 8000, 16000, 48000
};

/// What the cache holds and how it has done.
struct PromptCacheInfo {
    std::size_t prompts = 0;
    std::size_t bytes = 0;  // PCM at the files' own rates
    std::size_t max_bytes = 0;
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;  // loads that read a file: first use or the file changed
    std::uint64_t evictions = 0;
};

/// Decoded prompts by path. A load stats the file and reuses the decoded
/// prompt only if the file is the same version (device, inode, size, mtime),
/// so a prompt replaced on disk is read again. Beyond ``max_bytes`` of PCM the
/// least recently loaded prompts are dropped from the cache; players that hold
/// them keep playing them. Thread-safe; loads happen when calls are set up,
/// never on a worker's tick.
class PromptCache {
public:
    explicit PromptCache(std::size_t max_bytes);

    /// The prompt in the WAV at ``path``; PromptError if it cannot be read or played.
    std::shared_ptr<const Prompt> load(const std::string& path);
    PromptCacheInfo info() const;
    /// Changes the budget, dropping least recently loaded prompts beyond it now.
    void set_max_bytes(std::size_t max_bytes);

    /// The process's cache (256 MiB), which core.Prompt.load() uses.
    static PromptCache& shared();

private:
    struct Entry {
        FileIdentity identity;
        std::shared_ptr<const Prompt> prompt;
        std::uint64_t last_used;
    };
    void evict_beyond_budget(const std::string& keep);

    std::size_t max_bytes_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, Entry> entries_;
    PromptCacheInfo info_;
    std::uint64_t clock_ = 0;  // orders loads for least-recently-used eviction
};

}  // namespace callbox::player
