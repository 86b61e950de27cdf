// WAV prompts: RIFF/WAVE files (Microsoft's multimedia format, with the
// WAVE_FORMAT_EXTENSIBLE header) holding mono 16-bit PCM, A-law or u-law at
// 8, 16 or 48 kHz, decoded to 16-bit linear PCM. Anything else is refused
// with a PromptError naming the file and the problem, so an administrator
// who uploads the wrong file learns what to convert.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace callbox::player {

/// A prompt file that cannot be read or is not a WAV we play; the message
/// starts with the file's name ("prompt.wav: 2 channels; prompts must be mono").
class PromptError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// How the samples are stored in the file.
enum class Encoding { pcm16, alaw, ulaw };

/// The name Python and the docs use for an encoding ("pcm16", "alaw", "ulaw").
const char* encoding_name(Encoding encoding);

/// A decoded WAV.
struct WavAudio {
    unsigned sample_rate = 0;
    Encoding encoding = Encoding::pcm16;
    // The data chunk claimed 0 bytes or more than the file holds, as a writer
    // that crashed before fixing its header leaves it: the audio is what is there.
    bool truncated = false;
    std::vector<std::int16_t> pcm;
};

/// Files larger than this are refused before they are read (an hour of
/// 48 kHz PCM is 330 MiB; music on hold is minutes).
inline constexpr std::uint64_t kMaxWavBytes = 256ull << 20;

/// Decodes a whole WAV file held in memory; ``name`` is used in errors.
WavAudio decode_wav(std::string_view name, std::span<const std::uint8_t> file);

/// What identifies one version of a file on disk: a replaced or rewritten
/// file differs in at least one of these.
struct FileIdentity {
    std::uint64_t device = 0;
    std::uint64_t inode = 0;
    std::uint64_t size = 0;
    std::int64_t mtime_ns = 0;
    bool operator==(const FileIdentity&) const = default;
};

/// The identity of the file at ``path`` now; PromptError if it cannot be stat'ed.
FileIdentity file_identity(const std::string& path);

/// A file's bytes and the identity of the version that was read.
struct FileContents {
    FileIdentity identity;
    std::vector<std::uint8_t> bytes;
};

/// Reads the regular file at ``path`` whole (at most kMaxWavBytes); PromptError otherwise.
FileContents read_prompt_file(const std::string& path);

}  // namespace callbox::player
