// WAV to MP3 with LAME, for recordings after the call (see docs/decisions.md).
#include <lame/lame.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "record/recorder.h"

namespace callbox::record {

namespace {

std::uint32_t u32(const char* p) {
    const auto* b = reinterpret_cast<const unsigned char*>(p);
    return b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
}

std::uint16_t u16(const char* p) {
    const auto* b = reinterpret_cast<const unsigned char*>(p);
    return static_cast<std::uint16_t>(b[0] | (b[1] << 8));
}

// Streams the samples of a 16-bit PCM WAV, so an hour-long call needs no hour of memory.
// The data chunk's size is trusted only up to the file's end, so a recording cut short
// by a crash converts as far as it plays.
class WavReader {
public:
    explicit WavReader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
        if (!in_) throw RecordError("cannot open the WAV '" + path + "'");
        in_.seekg(0, std::ios::end);
        const auto file_size = static_cast<std::uint64_t>(in_.tellg());
        in_.seekg(0);
        char riff[12];
        if (!in_.read(riff, sizeof riff) || std::memcmp(riff, "RIFF", 4) != 0 ||
            std::memcmp(riff + 8, "WAVE", 4) != 0) {
            throw RecordError("'" + path + "' is not a WAV file");
        }
        char chunk[8];
        while (in_.read(chunk, sizeof chunk)) {
            const std::uint64_t at = static_cast<std::uint64_t>(in_.tellg());
            const std::uint64_t size = std::min<std::uint64_t>(u32(chunk + 4), file_size - at);
            if (std::memcmp(chunk, "fmt ", 4) == 0 && size >= 16) {
                char fmt[16];
                in_.read(fmt, sizeof fmt);
                if (u16(fmt) != 1 || u16(fmt + 14) != 16) throw RecordError("'" + path + "' is not 16-bit PCM");
                channels_ = u16(fmt + 2);
                sample_rate_ = static_cast<int>(u32(fmt + 4));
            } else if (std::memcmp(chunk, "data", 4) == 0) {
                if (channels_ < 1 || channels_ > 2) {
                    throw RecordError("'" + path + "' needs a fmt chunk with 1 or 2 channels before its data");
                }
                frames_left_ = size / (2 * static_cast<std::uint64_t>(channels_));
                return;
            }
            in_.seekg(static_cast<std::streamoff>(at + size + (size & 1)));
        }
        throw RecordError("'" + path + "' has no data chunk");
    }

    int channels() const { return channels_; }
    int sample_rate() const { return sample_rate_; }

    // Reads up to `frames` interleaved frames into `out`; 0 at the end.
    std::size_t read(std::int16_t* out, std::size_t frames) {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(frames, frames_left_));
        const auto bytes = static_cast<std::streamsize>(n * 2 * static_cast<std::size_t>(channels_));
        if (n > 0 && !in_.read(reinterpret_cast<char*>(out), bytes)) {
            throw RecordError("cannot read the WAV '" + path_ + "'");
        }
        frames_left_ -= n;
        return n;
    }

private:
    std::string path_;
    std::ifstream in_;
    int channels_ = 0;
    int sample_rate_ = 0;
    std::uint64_t frames_left_ = 0;
};

struct LameDeleter {
    void operator()(lame_global_flags* gf) const { lame_close(gf); }
};

std::size_t encode(lame_global_flags* gf, WavReader& wav, bool mono, std::FILE* out, const std::string& wav_path,
                   const std::string& mp3_path) {
    constexpr std::size_t kChunk = 8192;  // frames per call
    std::vector<std::int16_t> pcm(kChunk * static_cast<std::size_t>(wav.channels()));
    std::vector<unsigned char> mp3(static_cast<std::size_t>(1.25 * kChunk + 7200));
    std::size_t total = 0;
    auto put = [&](int n) {
        if (n < 0) throw RecordError("LAME failed encoding '" + wav_path + "' (" + std::to_string(n) + ")");
        if (std::fwrite(mp3.data(), 1, static_cast<std::size_t>(n), out) != static_cast<std::size_t>(n)) {
            throw RecordError("cannot write the MP3 '" + mp3_path + "'");
        }
        total += static_cast<std::size_t>(n);
    };
    const auto room = static_cast<int>(mp3.size());
    while (const std::size_t frames = wav.read(pcm.data(), kChunk)) {
        const int n = static_cast<int>(frames);
        if (wav.channels() == 1) {
            // lame_encode_buffer reads only the left buffer for one channel.
            put(lame_encode_buffer(gf, pcm.data(), pcm.data(), n, mp3.data(), room));
        } else if (mono) {
            // Downmix here rather than in LAME, so the sum clips as the recorder's mono mix does.
            for (std::size_t i = 0; i < frames; ++i) {
                pcm[i] = static_cast<std::int16_t>(std::clamp(pcm[2 * i] + pcm[2 * i + 1], -32768, 32767));
            }
            put(lame_encode_buffer(gf, pcm.data(), pcm.data(), n, mp3.data(), room));
        } else {
            put(lame_encode_buffer_interleaved(gf, pcm.data(), n, mp3.data(), room));
        }
    }
    put(lame_encode_flush(gf, mp3.data(), room));
    if (std::fflush(out) != 0) throw RecordError("cannot write the MP3 '" + mp3_path + "'");
    return total;
}

}  // namespace

std::size_t wav_to_mp3(const std::string& wav_path, const std::string& mp3_path, int bitrate_kbps, bool mono) {
    WavReader wav(wav_path);
    if (!mono && wav.channels() != 2) {
        throw RecordError("joint stereo needs a stereo WAV; '" + wav_path + "' is mono");
    }
    std::unique_ptr<lame_global_flags, LameDeleter> gf(lame_init());
    if (!gf) throw RecordError("LAME could not start");
    lame_set_in_samplerate(gf.get(), wav.sample_rate());
    lame_set_out_samplerate(gf.get(), wav.sample_rate());
    lame_set_num_channels(gf.get(), mono ? 1 : 2);
    lame_set_mode(gf.get(), mono ? MONO : JOINT_STEREO);
    lame_set_VBR(gf.get(), vbr_off);
    lame_set_brate(gf.get(), bitrate_kbps);
    lame_set_bWriteVbrTag(gf.get(), 0);
    if (lame_init_params(gf.get()) < 0) {
        throw RecordError("LAME refused " + std::to_string(wav.sample_rate()) + " Hz at " +
                          std::to_string(bitrate_kbps) + " kbit/s");
    }
    if (lame_get_brate(gf.get()) != bitrate_kbps) {
        throw RecordError("bitrate_kbps " + std::to_string(bitrate_kbps) + " is not an MP3 bitrate at " +
                          std::to_string(wav.sample_rate()) + " Hz");
    }
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> out(std::fopen(mp3_path.c_str(), "wb"), &std::fclose);
    if (!out) throw RecordError("cannot open the MP3 '" + mp3_path + "': " + std::strerror(errno));
    try {
        return encode(gf.get(), wav, mono, out.get(), wav_path, mp3_path);
    } catch (const RecordError&) {
        out.reset();
        std::remove(mp3_path.c_str());  // no partial MP3 left behind
        throw;
    }
}

}  // namespace callbox::record
