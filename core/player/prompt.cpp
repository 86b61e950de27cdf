#include "player/prompt.h"

#include <algorithm>
#include <utility>

#include "codec/resample.h"

namespace callbox::player {

namespace {

std::size_t rate_slot(unsigned rate) {
    switch (rate) {
        case 8000: return 0;
        case 16000: return 1;
        case 48000: return 2;
        default: break;
    }
    throw std::invalid_argument("sample rate " + std::to_string(rate) + " Hz: expected 8000, 16000 or 48000");
}

std::size_t pcm_bytes(const Prompt& prompt) { return prompt.pcm().size() * sizeof(std::int16_t); }

// The whole of `in` at another rate, aligned with it: the filter's delay is
// taken off the front and its tail flushed out with silence, so sample k of
// the result is the input's instant k * in_rate / out_rate.
std::vector<std::int16_t> resample_whole(std::span<const std::int16_t> in, unsigned in_rate, unsigned out_rate) {
    codec::Resampler resampler(static_cast<int>(in_rate), static_cast<int>(out_rate));
    const std::size_t wanted = in.size() * out_rate / in_rate;
    const auto delay = static_cast<std::size_t>(resampler.delay());
    std::vector<std::int16_t> out = resampler.process(in);
    const std::vector<std::int16_t> silence(in_rate / 50);
    while (out.size() < delay + wanted) {
        const auto more = resampler.process(silence);
        out.insert(out.end(), more.begin(), more.end());
    }
    out.erase(out.begin() + static_cast<std::ptrdiff_t>(delay + wanted), out.end());
    out.erase(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(delay));
    return out;
}

}  // namespace

Prompt::Prompt(std::string name, WavAudio audio) : name_(std::move(name)), audio_(std::move(audio)) {}

std::shared_ptr<const Prompt> Prompt::decode(std::string_view name, std::span<const std::uint8_t> file) {
    return std::make_shared<const Prompt>(std::string(name), decode_wav(name, file));
}

std::shared_ptr<const Prompt> Prompt::at_rate(unsigned rate) const {
    const std::size_t slot = rate_slot(rate);
    if (rate == sample_rate()) return shared_from_this();
    const std::lock_guard lock(resampled_mutex_);
    auto& resampled = resampled_[slot];
    if (!resampled) {
        WavAudio audio{rate, audio_.encoding, audio_.truncated, resample_whole(audio_.pcm, sample_rate(), rate)};
        resampled = std::make_shared<const Prompt>(name_, std::move(audio));
    }
    return resampled;
}

PromptCache::PromptCache(std::size_t max_bytes) : max_bytes_(max_bytes) {}

PromptCache& PromptCache::shared() {
    static PromptCache cache(256u << 20);
    return cache;
}

std::shared_ptr<const Prompt> PromptCache::load(const std::string& path) {
    const FileIdentity now = file_identity(path);
    {
        const std::lock_guard lock(mutex_);
        const auto found = entries_.find(path);
        if (found != entries_.end() && found->second.identity == now) {
            ++info_.hits;
            found->second.last_used = ++clock_;
            return found->second.prompt;
        }
    }
    // Read and decode without the lock: other threads load other prompts meanwhile.
    FileContents file = read_prompt_file(path);
    auto prompt = std::make_shared<const Prompt>(path, decode_wav(path, file.bytes));
    const std::lock_guard lock(mutex_);
    ++info_.misses;
    auto& entry = entries_[path];
    if (entry.prompt) info_.bytes -= pcm_bytes(*entry.prompt);
    entry = {file.identity, prompt, ++clock_};
    info_.bytes += pcm_bytes(*prompt);
    evict_beyond_budget(path);
    return prompt;
}

void PromptCache::evict_beyond_budget(const std::string& keep) {
    while (info_.bytes > max_bytes_ && entries_.size() > 1) {
        auto oldest = entries_.end();
        for (auto it = entries_.begin(); it != entries_.end(); ++it) {
            if (it->first != keep && (oldest == entries_.end() || it->second.last_used < oldest->second.last_used)) {
                oldest = it;
            }
        }
        info_.bytes -= pcm_bytes(*oldest->second.prompt);
        ++info_.evictions;
        entries_.erase(oldest);
    }
}

PromptCacheInfo PromptCache::info() const {
    const std::lock_guard lock(mutex_);
    PromptCacheInfo info = info_;
    info.prompts = entries_.size();
    info.max_bytes = max_bytes_;
    return info;
}

void PromptCache::set_max_bytes(std::size_t max_bytes) {
    const std::lock_guard lock(mutex_);
    max_bytes_ = max_bytes;
    evict_beyond_budget({});
}

}  // namespace callbox::player
