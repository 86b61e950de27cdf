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

struct Wav {
    int channels = 0;
    int sample_rate = 0;
    std::vector<std::int16_t> samples;  // interleaved
};

std::uint32_t u32(const char* p) {
    const auto* b = reinterpret_cast<const unsigned char*>(p);
    return b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
}

std::uint16_t u16(const char* p) {
    const auto* b = reinterpret_cast<const unsigned char*>(p);
    return static_cast<std::uint16_t>(b[0] | (b[1] << 8));
}

// Reads a 16-bit PCM WAV; the data chunk's size is trusted only up to the file's end,
// so a recording cut short by a crash converts as far as it plays.
Wav read_wav(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw RecordError("cannot open the WAV '" + path + "'");
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.size() < 12 || std::memcmp(bytes.data(), "RIFF", 4) != 0 ||
        std::memcmp(bytes.data() + 8, "WAVE", 4) != 0) {
        throw RecordError("'" + path + "' is not a WAV file");
    }
    Wav wav;
    std::size_t pos = 12;
    while (pos + 8 <= bytes.size()) {
        const char* chunk = bytes.data() + pos;
        const std::size_t size = std::min<std::size_t>(u32(chunk + 4), bytes.size() - pos - 8);
        if (std::memcmp(chunk, "fmt ", 4) == 0 && size >= 16) {
            if (u16(chunk + 8) != 1 || u16(chunk + 22) != 16) {
                throw RecordError("'" + path + "' is not 16-bit PCM");
            }
            wav.channels = u16(chunk + 10);
            wav.sample_rate = static_cast<int>(u32(chunk + 12));
        } else if (std::memcmp(chunk, "data", 4) == 0) {
            if (wav.channels < 1 || wav.channels > 2) {
                throw RecordError("'" + path + "' needs a fmt chunk with 1 or 2 channels before its data");
            }
            const std::size_t count = size / (2 * static_cast<std::size_t>(wav.channels)) * wav.channels;
            wav.samples.resize(count);
            std::memcpy(wav.samples.data(), chunk + 8, count * 2);
            return wav;
        }
        pos += 8 + size + (size & 1);
    }
    throw RecordError("'" + path + "' has no data chunk");
}

struct LameDeleter {
    void operator()(lame_global_flags* gf) const { lame_close(gf); }
};

std::size_t encode(lame_global_flags* gf, const Wav& wav, std::FILE* out, const std::string& wav_path,
                   const std::string& mp3_path) {
    constexpr int kChunk = 8192;  // samples per channel per call
    std::vector<unsigned char> mp3(static_cast<std::size_t>(1.25 * kChunk + 7200));
    std::size_t total = 0;
    auto put = [&](int n) {
        if (n < 0) throw RecordError("LAME failed encoding '" + wav_path + "' (" + std::to_string(n) + ")");
        if (std::fwrite(mp3.data(), 1, static_cast<std::size_t>(n), out) != static_cast<std::size_t>(n)) {
            throw RecordError("cannot write the MP3 '" + mp3_path + "'");
        }
        total += static_cast<std::size_t>(n);
    };
    const std::size_t frames = wav.samples.size() / static_cast<std::size_t>(wav.channels);
    for (std::size_t at = 0; at < frames; at += kChunk) {
        const int n = static_cast<int>(std::min<std::size_t>(kChunk, frames - at));
        const std::int16_t* pcm = wav.samples.data() + at * static_cast<std::size_t>(wav.channels);
        // lame_encode_buffer reads only the left buffer for one channel.
        put(wav.channels == 2 ? lame_encode_buffer_interleaved(gf, const_cast<short*>(pcm), n, mp3.data(),
                                                               static_cast<int>(mp3.size()))
                              : lame_encode_buffer(gf, pcm, pcm, n, mp3.data(), static_cast<int>(mp3.size())));
    }
    put(lame_encode_flush(gf, mp3.data(), static_cast<int>(mp3.size())));
    if (std::fflush(out) != 0) throw RecordError("cannot write the MP3 '" + mp3_path + "'");
    return total;
}

}  // namespace

std::size_t wav_to_mp3(const std::string& wav_path, const std::string& mp3_path, int bitrate_kbps, bool mono) {
    Wav wav = read_wav(wav_path);
    if (!mono && wav.channels != 2) {
        throw RecordError("joint stereo needs a stereo WAV; '" + wav_path + "' is mono");
    }
    if (mono && wav.channels == 2) {
        // Downmix here rather than in LAME, so the sum clips the same way as the recorder's mono mix.
        for (std::size_t i = 0; i < wav.samples.size() / 2; ++i) {
            const int sum = wav.samples[2 * i] + wav.samples[2 * i + 1];
            wav.samples[i] = static_cast<std::int16_t>(std::clamp(sum, -32768, 32767));
        }
        wav.samples.resize(wav.samples.size() / 2);
        wav.channels = 1;
    }
    std::unique_ptr<lame_global_flags, LameDeleter> gf(lame_init());
    if (!gf) throw RecordError("LAME could not start");
    lame_set_in_samplerate(gf.get(), wav.sample_rate);
    lame_set_out_samplerate(gf.get(), wav.sample_rate);
    lame_set_num_channels(gf.get(), wav.channels);
    lame_set_mode(gf.get(), mono ? MONO : JOINT_STEREO);
    lame_set_VBR(gf.get(), vbr_off);
    lame_set_brate(gf.get(), bitrate_kbps);
    lame_set_bWriteVbrTag(gf.get(), 0);
    if (lame_init_params(gf.get()) < 0) {
        throw RecordError("LAME refused " + std::to_string(wav.sample_rate) + " Hz at " +
                          std::to_string(bitrate_kbps) + " kbit/s");
    }
    if (lame_get_brate(gf.get()) != bitrate_kbps) {
        throw RecordError("bitrate_kbps " + std::to_string(bitrate_kbps) + " is not an MP3 bitrate at " +
                          std::to_string(wav.sample_rate) + " Hz");
    }
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> out(std::fopen(mp3_path.c_str(), "wb"), &std::fclose);
    if (!out) throw RecordError("cannot open the MP3 '" + mp3_path + "': " + std::strerror(errno));
    try {
        return encode(gf.get(), wav, out.get(), wav_path, mp3_path);
    } catch (const RecordError&) {
        out.reset();
        std::remove(mp3_path.c_str());  // no partial MP3 left behind
        throw;
    }
}

}  // namespace callbox::record
