#include "player/wav.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>

#include "codec/g711.h"

namespace callbox::player {

namespace {

constexpr std::uint16_t kFormatPcm = 0x0001;
constexpr std::uint16_t kFormatAlaw = 0x0006;
constexpr std::uint16_t kFormatUlaw = 0x0007;
constexpr std::uint16_t kFormatExtensible = 0xFFFE;
constexpr std::size_t kFmtBytes = 16;            // WAVEFORMAT plus wBitsPerSample
constexpr std::size_t kExtensibleFmtBytes = 40;  // WAVEFORMATEXTENSIBLE
// KSDATAFORMAT_SUBTYPE_PCM and its kin are {0000XXXX-0000-0010-8000-00AA00389B71}
// with the 16-bit format tag in the first field; this is what follows the tag.
constexpr std::array<std::uint8_t, 14> kSubformatGuidTail{0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                                          0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};

std::uint16_t u16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }

std::uint32_t u32(const std::uint8_t* p) {
    return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}

bool is(const std::uint8_t* p, const char (&id)[5]) { return std::memcmp(p, id, 4) == 0; }

// A chunk id as text for a message; bytes that are not printable ASCII show as '?'.
std::string printable_id(const std::uint8_t* id) {
    std::string text(reinterpret_cast<const char*>(id), 4);
    for (char& c : text) {
        if (c < 0x20 || c > 0x7E) c = '?';
    }
    return text;
}

std::string hex_tag(std::uint16_t tag) {
    char text[8];
    std::snprintf(text, sizeof text, "0x%04X", tag);
    return text;
}

// Names of formats people are likely to upload by mistake, for the error message.
std::string format_name(std::uint16_t tag) {
    switch (tag) {
        case 0x0002: return "Microsoft ADPCM";
        case 0x0003: return "IEEE float";
        case 0x0011: return "IMA ADPCM";
        case 0x0031: return "GSM 6.10";
        case 0x0050: return "MPEG";
        case 0x0055: return "MPEG Layer 3";
        default: return "unknown";
    }
}

struct Format {
    Encoding encoding;
    unsigned sample_rate;
};

class WavParser {
public:
    WavParser(std::string_view name, std::span<const std::uint8_t> file) : name_(name), file_(file) {}

    WavAudio parse() {
        check_riff_header();
        std::optional<Format> format;
        std::uint64_t at = 12;
        // Every read below is checked against the file's real size, never the
        // sizes the file claims, so no header can make us read out of bounds.
        while (at + 8 <= file_.size()) {
            const std::uint8_t* chunk = file_.data() + at;
            const std::uint64_t size = u32(chunk + 4);
            const std::uint64_t body = at + 8;
            const std::uint64_t present = file_.size() - body;
            if (is(chunk, "fmt ")) {
                if (format) fail("two fmt chunks");
                if (size > present) {
                    fail("the fmt chunk is cut short (" + std::to_string(size) + " bytes declared, " +
                         std::to_string(present) + " in the file)");
                }
                format = parse_fmt(file_.subspan(body, size));
            } else if (is(chunk, "data")) {
                if (!format) fail("the data chunk comes before the fmt chunk");
                // A writer that crashed left 0 or a guess here: play what is there.
                const bool truncated = size == 0 || size > present;
                return decode(*format, file_.subspan(body, truncated ? present : size), truncated);
            }
            if (size > present) {
                fail("a '" + printable_id(chunk) + "' chunk of " + std::to_string(size) +
                     " bytes runs past the end of the file (" + std::to_string(present) + " bytes left)");
            }
            at = body + size + (size & 1);  // chunks are padded to an even length
        }
        if (at < file_.size()) fail("the file ends inside a chunk header (at byte " + std::to_string(at) + ")");
        fail(format ? "no data chunk" : "no fmt chunk");
    }

private:
    [[noreturn]] void fail(const std::string& problem) const {
        throw PromptError(std::string(name_) + ": " + problem);
    }

    void check_riff_header() const {
        const std::uint8_t* p = file_.data();
        const std::size_t n = file_.size();
        // An ID3 tag or an MPEG audio frame sync: an MP3 renamed to .wav.
        if (n >= 3 && (std::memcmp(p, "ID3", 3) == 0 || (p[0] == 0xFF && (p[1] & 0xE0) == 0xE0))) {
            fail("an MP3 file, not a WAV; prompts must be WAV files of 16-bit PCM, A-law or u-law");
        }
        if (n >= 4 && is(p, "RIFX")) fail("a big-endian RIFX file; prompts must be little-endian RIFF/WAVE");
        if (n < 12) fail("too short for a WAV header (" + std::to_string(n) + " bytes)");
        if (!is(p, "RIFF") || !is(p + 8, "WAVE")) fail("not a RIFF/WAVE file");
    }

    Format parse_fmt(std::span<const std::uint8_t> fmt) const {
        if (fmt.size() < kFmtBytes) {
            fail("a fmt chunk of " + std::to_string(fmt.size()) + " bytes; it needs at least " +
                 std::to_string(kFmtBytes));
        }
        const std::uint8_t* p = fmt.data();
        std::uint16_t tag = u16(p);
        const unsigned channels = u16(p + 2);
        const std::uint32_t rate = u32(p + 4);
        const unsigned block_align = u16(p + 12);
        const unsigned bits = u16(p + 14);
        if (tag == kFormatExtensible) {
            if (fmt.size() < kExtensibleFmtBytes) {
                fail("a WAVE_FORMAT_EXTENSIBLE fmt chunk of " + std::to_string(fmt.size()) + " bytes; it needs " +
                     std::to_string(kExtensibleFmtBytes));
            }
            if (std::memcmp(p + 26, kSubformatGuidTail.data(), kSubformatGuidTail.size()) != 0) {
                fail("WAVE_FORMAT_EXTENSIBLE with a subformat GUID that is not a WAVE format tag");
            }
            tag = u16(p + 24);
        }
        Encoding encoding;
        switch (tag) {
            case kFormatPcm: encoding = Encoding::pcm16; break;
            case kFormatAlaw: encoding = Encoding::alaw; break;
            case kFormatUlaw: encoding = Encoding::ulaw; break;
            default:
                fail("format " + hex_tag(tag) + " (" + format_name(tag) +
                     "); prompts must be 16-bit PCM, A-law or u-law");
        }
        if (channels != 1) fail(std::to_string(channels) + " channels; prompts must be mono");
        if (encoding == Encoding::pcm16 && bits != 16) {
            fail(std::to_string(bits) + "-bit PCM; prompts must be 16-bit PCM, A-law or u-law");
        }
        if (encoding != Encoding::pcm16 && bits != 8) {
            fail(std::string(encoding == Encoding::alaw ? "A-law" : "u-law") + " with " + std::to_string(bits) +
                 " bits per sample; G.711 has 8");
        }
        if (rate != 8000 && rate != 16000 && rate != 48000) {
            fail(std::to_string(rate) + " Hz; prompts must be 8000, 16000 or 48000 Hz");
        }
        if (block_align != bits / 8) {
            fail("block align " + std::to_string(block_align) + "; mono " + std::to_string(bits) +
                 "-bit audio has " + std::to_string(bits / 8));
        }
        return {encoding, rate};
    }

    WavAudio decode(const Format& format, std::span<const std::uint8_t> data, bool truncated) const {
        WavAudio audio{format.sample_rate, format.encoding, truncated, {}};
        // A crash can also cut the last 16-bit sample in half: it is dropped.
        const std::size_t count = format.encoding == Encoding::pcm16 ? data.size() / 2 : data.size();
        if (count == 0) fail("no audio in the data chunk");
        audio.pcm.resize(count);
        switch (format.encoding) {
            case Encoding::pcm16:
                for (std::size_t i = 0; i < count; ++i) audio.pcm[i] = static_cast<std::int16_t>(u16(&data[2 * i]));
                break;
            case Encoding::alaw: codec::g711::alaw_decode(data.data(), count, audio.pcm.data()); break;
            case Encoding::ulaw: codec::g711::ulaw_decode(data.data(), count, audio.pcm.data()); break;
        }
        return audio;
    }

    std::string_view name_;
    std::span<const std::uint8_t> file_;
};

[[noreturn]] void fail_errno(const std::string& path, const char* what) {
    throw PromptError(path + ": cannot " + what + " (" + std::strerror(errno) + ")");
}

FileIdentity identity_of(const struct stat& st) {
    return {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
            static_cast<std::uint64_t>(st.st_size),
            static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

// Closes a file descriptor on every way out.
class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }

private:
    int fd_;
};

}  // namespace

const char* encoding_name(Encoding encoding) {
    switch (encoding) {
        case Encoding::alaw: return "alaw";
        case Encoding::ulaw: return "ulaw";
        case Encoding::pcm16: break;
    }
    return "pcm16";
}

WavAudio decode_wav(std::string_view name, std::span<const std::uint8_t> file) {
    return WavParser(name, file).parse();
}

FileIdentity file_identity(const std::string& path) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) fail_errno(path, "open");
    return identity_of(st);
}

FileContents read_prompt_file(const std::string& path) {
    const Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) fail_errno(path, "open");
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0) fail_errno(path, "stat");
    if (!S_ISREG(st.st_mode)) throw PromptError(path + ": not a regular file");
    FileContents contents{identity_of(st), {}};
    if (contents.identity.size > kMaxWavBytes) {
        throw PromptError(path + ": " + std::to_string(contents.identity.size) + " bytes; prompts are at most " +
                          std::to_string(kMaxWavBytes >> 20) + " MiB");
    }
    contents.bytes.resize(contents.identity.size);
    std::size_t done = 0;
    while (done < contents.bytes.size()) {
        const ssize_t n = ::read(fd.get(), contents.bytes.data() + done, contents.bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail_errno(path, "read");
        if (n == 0) break;  // shrunk while we read: take what there is
        done += static_cast<std::size_t>(n);
    }
    contents.bytes.resize(done);
    return contents;
}

}  // namespace callbox::player
