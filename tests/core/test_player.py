"""The prompt player: WAV prompts of every accepted kind decode and play at the
right frequency, level and length at every output rate; playlists and loops
play in order; barge-in and stop end playback; files cut short by a crash play
what they hold; every other file is refused with a message naming it, and no
bytes at all can crash the parser (it also runs under ASan and UBSan)."""

from __future__ import annotations

import os
import re
import struct
import threading
import wave
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import core
from tests.core.signals import dbm0, dominant_frequency, goertzel_peak, rms, samples_of, tone_pcm
from tests.core.tools import run_tool

pytestmark = pytest.mark.skipif(
    core.IMPLEMENTATION == "python", reason="the player is in the compiled core only"
)

RATES = (8000, 16000, 48000)
LEVEL_DBM0 = -10.0
FORMAT_PCM, FORMAT_ALAW, FORMAT_ULAW, FORMAT_EXTENSIBLE = 1, 6, 7, 0xFFFE
GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")


# --- WAV files made in the test --------------------------------------------------------------


def write_wav(path: Path, pcm: bytes, rate: int, *, channels: int = 1, width: int = 2) -> Path:
    """A WAV written by Python's ``wave`` module (format 1, PCM)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


def chunk(tag: bytes, body: bytes, *, size: int | None = None) -> bytes:
    """One RIFF chunk, padded to an even length; ``size`` overrides the declared size."""
    declared = len(body) if size is None else size
    return tag + struct.pack("<I", declared) + body + b"\0" * (len(body) % 2)


def fmt(
    tag: int,
    *,
    channels: int = 1,
    rate: int = 8000,
    bits: int = 16,
    block_align: int | None = None,
    subformat: int | None = None,
    guid_tail: bytes = GUID_TAIL,
) -> bytes:
    """A fmt chunk; ``subformat`` makes it WAVE_FORMAT_EXTENSIBLE around that tag."""
    align = channels * bits // 8 if block_align is None else block_align
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    if subformat is not None:
        body += struct.pack("<HHI", 22, bits, 4) + struct.pack("<H", subformat) + guid_tail
    return chunk(b"fmt ", body)


def riff(*chunks: bytes) -> bytes:
    """A RIFF/WAVE file of ``chunks``."""
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tone(frequency: float, rate: int, ms: int, level: float = LEVEL_DBM0) -> bytes:
    """A sine as 16-bit PCM."""
    return tone_pcm(frequency, level, rate, rate * ms // 1000)


def little_endian(pcm: bytes) -> bytes:
    """PCM in a WAV's byte order (this machine's order is the same; asserted)."""
    assert struct.pack("=h", 1) == struct.pack("<h", 1)
    return pcm


def play_all(player: core.Player, limit: int = 10_000) -> list[bytes]:
    """Every frame until the player ends."""
    frames = []
    while (frame := player.next_frame()) is not None:
        frames.append(frame)
        assert len(frames) < limit
    return frames


# --- Playing tones from every kind of file at every rate -------------------------------------


@pytest.mark.parametrize("file_rate", RATES)
@pytest.mark.parametrize("out_rate", RATES)
def test_a_pcm_prompt_plays_its_tone_at_every_output_rate(
    tmp_path: Path, file_rate: int, out_rate: int
) -> None:
    path = write_wav(tmp_path / "tone.wav", tone(1000, file_rate, 500), file_rate)
    prompt = core.Prompt.load(path)
    assert (prompt.sample_rate, prompt.encoding, prompt.duration_ms) == (file_rate, "pcm16", 500)
    player = core.Player([prompt], rate=out_rate)
    frames = play_all(player)
    assert len(frames) == 25  # 500 ms of 20 ms frames
    assert all(len(f) == 2 * out_rate // 50 for f in frames)
    middle = b"".join(frames[5:20])
    assert dominant_frequency(middle, out_rate, 300, 3400) == 1000
    assert dbm0(goertzel_peak(middle, out_rate, 1000)) == pytest.approx(LEVEL_DBM0, abs=0.3)
    assert player.end == core.PlaybackEnd("finished", "")


def test_resampled_audio_is_aligned_with_the_original(tmp_path: Path) -> None:
    """A 16 kHz prompt played at 8 kHz starts and ends where the original does."""
    burst = tone(1000, 16000, 100)
    path = write_wav(tmp_path / "burst.wav", bytes(3200) + burst + bytes(3200), 16000)
    frames = play_all(core.Player([core.Prompt.load(path)], rate=8000))
    assert len(frames) == 15
    energies = [rms(f) for f in frames]
    assert all(e < 200 for e in energies[:4] + energies[11:])  # filter ringing only
    assert all(e > 1500 for e in energies[6:9])


def test_the_last_frame_is_padded_with_silence(tmp_path: Path) -> None:
    pcm = tone(500, 8000, 20) + tone(500, 8000, 20)[:20]  # 180 samples
    frames = play_all(core.Player([core.Prompt.load(write_wav(tmp_path / "p.wav", pcm, 8000))]))
    assert len(frames) == 2
    assert frames[1][:20] == pcm[320:]
    assert frames[1][20:] == bytes(300)


def g711_wav(tag: int, codes: bytes, *, extensible: bool = False, rate: int = 8000) -> bytes:
    """An A-law or u-law WAV, plain or in a WAVE_FORMAT_EXTENSIBLE header."""
    header = (
        fmt(FORMAT_EXTENSIBLE, rate=rate, bits=8, subformat=tag)
        if extensible
        else fmt(tag, rate=rate, bits=8)
    )
    return riff(header, chunk(b"fact", struct.pack("<I", len(codes))), chunk(b"data", codes))


@pytest.mark.parametrize("extensible", [False, True], ids=["plain", "extensible"])
@pytest.mark.parametrize(
    ("tag", "encoding", "encode", "decode"),
    [
        (FORMAT_ALAW, "alaw", core.alaw_encode, core.alaw_decode),
        (FORMAT_ULAW, "ulaw", core.ulaw_encode, core.ulaw_decode),
    ],
    ids=["alaw", "ulaw"],
)
def test_g711_prompts_decode_to_the_g711_tables_and_play_their_tone(
    tmp_path: Path,
    tag: int,
    encoding: str,
    encode: Callable[[bytes], bytes],
    decode: Callable[[bytes], bytes],
    extensible: bool,
) -> None:
    codes = encode(tone(697, 8000, 300))
    path = tmp_path / "g711.wav"
    path.write_bytes(g711_wav(tag, codes, extensible=extensible))
    prompt = core.Prompt.load(path)
    assert (prompt.encoding, prompt.sample_rate, prompt.samples) == (encoding, 8000, len(codes))
    assert prompt.pcm == decode(codes)
    played = b"".join(play_all(core.Player([prompt], rate=16000)))
    assert dominant_frequency(played, 16000, 300, 3400) == 695  # 697 Hz on a 5 Hz grid
    assert dbm0(goertzel_peak(played, 16000, 697)) == pytest.approx(LEVEL_DBM0, abs=0.3)


@pytest.mark.parametrize("rate", RATES)
def test_an_extensible_pcm_prompt_plays(tmp_path: Path, rate: int) -> None:
    pcm = tone(440, rate, 100)
    path = tmp_path / "ext.wav"
    path.write_bytes(
        riff(fmt(FORMAT_EXTENSIBLE, rate=rate, subformat=FORMAT_PCM), chunk(b"data", pcm))
    )
    assert core.Prompt.load(path).pcm == little_endian(pcm)


def test_unknown_chunks_of_odd_length_are_skipped(tmp_path: Path) -> None:
    pcm = tone(800, 8000, 100)
    path = tmp_path / "chunks.wav"
    path.write_bytes(
        riff(
            chunk(b"JUNK", b"abc"),  # odd: one pad byte follows
            fmt(FORMAT_PCM),
            chunk(b"LIST", b"INFOISFT\x05\0\0\0sox!\0"),
            chunk(b"cue ", b"\0" * 7),
            chunk(b"data", pcm),
            chunk(b"LIST", b"trailing"),
        )
    )
    assert core.Prompt.load(path).pcm == little_endian(pcm)


# --- Files written by a process that crashed -------------------------------------------------


@pytest.mark.parametrize(
    "declared", [0, 0xFFFFFFFF, 1_000_000], ids=["zero", "streaming-max", "past-the-end"]
)
def test_a_crash_written_file_plays_the_audio_it_holds(tmp_path: Path, declared: int) -> None:
    pcm = tone(1000, 8000, 200)
    path = tmp_path / "crashed.wav"
    # The RIFF size is as wrong as the data size: neither was ever fixed up.
    body = b"WAVE" + fmt(FORMAT_PCM) + b"data" + struct.pack("<I", declared) + pcm
    path.write_bytes(b"RIFF" + struct.pack("<I", 36) + body)
    prompt = core.Prompt.load(path)
    assert prompt.truncated
    assert prompt.pcm == little_endian(pcm)
    assert len(play_all(core.Player([prompt]))) == 10


def test_a_sample_cut_in_half_by_a_crash_is_dropped(tmp_path: Path) -> None:
    pcm = tone(1000, 8000, 20)
    path = tmp_path / "half.wav"
    path.write_bytes(riff(fmt(FORMAT_PCM), b"data" + struct.pack("<I", 0)) + pcm + b"\x12")
    prompt = core.Prompt.load(path)
    assert (prompt.truncated, prompt.pcm) == (True, little_endian(pcm))


def test_a_complete_file_is_not_reported_truncated(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "ok.wav", tone(1000, 8000, 20), 8000)
    assert not core.Prompt.load(path).truncated


# --- Refusals: each names the file and the problem -------------------------------------------

GOOD_DATA = chunk(b"data", bytes(320))
REFUSED: dict[str, tuple[bytes, str]] = {
    "stereo": (riff(fmt(FORMAT_PCM, channels=2), GOOD_DATA), "2 channels; prompts must be mono"),
    "no-channels": (riff(fmt(FORMAT_PCM, channels=0), GOOD_DATA), "0 channels; prompts must"),
    "8-bit": (
        riff(fmt(FORMAT_PCM, bits=8), GOOD_DATA),
        "8-bit PCM; prompts must be 16-bit PCM, A-law or u-law",
    ),
    "24-bit": (riff(fmt(FORMAT_PCM, bits=24), GOOD_DATA), "24-bit PCM; prompts must"),
    "44.1kHz": (
        riff(fmt(FORMAT_PCM, rate=44100), GOOD_DATA),
        "44100 Hz; prompts must be 8000, 16000 or 48000 Hz",
    ),
    "float": (riff(fmt(3, bits=32), GOOD_DATA), r"format 0x0003 \(IEEE float\); prompts must"),
    "mp3-in-wav": (riff(fmt(0x55), GOOD_DATA), r"format 0x0055 \(MPEG Layer 3\)"),
    "gsm": (riff(fmt(0x31), GOOD_DATA), r"format 0x0031 \(GSM 6.10\)"),
    "mystery": (riff(fmt(0x1234), GOOD_DATA), r"format 0x1234 \(unknown\)"),
    "mp3-id3": (b"ID3\x04\0\0\0\0\0\x21" + bytes(100), "an MP3 file, not a WAV"),
    "mp3-sync": (b"\xff\xfb\x90\x64" + bytes(100), "an MP3 file, not a WAV"),
    "rifx": (b"RIFX" + bytes(40), "a big-endian RIFX file"),
    "empty": (b"", r"too short for a WAV header \(0 bytes\)"),
    "short-header": (b"RIFF\x24\0\0\0WAV", r"too short for a WAV header \(11 bytes\)"),
    "text": (b"this is not audio at all, just text", "not a RIFF/WAVE file"),
    "small-fmt": (
        riff(chunk(b"fmt ", bytes(14)), GOOD_DATA),
        "a fmt chunk of 14 bytes; it needs at least 16",
    ),
    "fmt-cut-short": (
        b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0",
        r"the fmt chunk is cut short \(16 bytes declared, 4 in the file\)",
    ),
    "header-cut-short": (
        b"RIFF\0\0\0\0WAVEfmt",
        r"the file ends inside a chunk header \(at byte 12\)",
    ),
    "absurd-chunk": (
        riff(chunk(b"LIST", bytes(10), size=0xFFFFFFF0), GOOD_DATA),
        r"a 'LIST' chunk of 4294967280 bytes runs past the end of the file",
    ),
    "garbage-chunk-id": (
        riff(chunk(b"\x01\xffab", bytes(4), size=5000), GOOD_DATA),
        r"a '\?\?ab' chunk of 5000 bytes runs past",
    ),
    "ext-short": (
        riff(chunk(b"fmt ", struct.pack("<HHIIHH", 0xFFFE, 1, 8000, 16000, 2, 16)), GOOD_DATA),
        "a WAVE_FORMAT_EXTENSIBLE fmt chunk of 16 bytes; it needs 40",
    ),
    "ext-bad-guid": (
        riff(fmt(FORMAT_EXTENSIBLE, subformat=1, guid_tail=bytes(14)), GOOD_DATA),
        "WAVE_FORMAT_EXTENSIBLE with a subformat GUID that is not a WAVE format tag",
    ),
    "ext-stereo": (
        riff(fmt(FORMAT_EXTENSIBLE, channels=2, subformat=1), GOOD_DATA),
        "2 channels; prompts must be mono",
    ),
    "alaw-16-bit": (
        riff(fmt(FORMAT_ALAW, bits=16), GOOD_DATA),
        "A-law with 16 bits per sample; G.711 has 8",
    ),
    "block-align": (
        riff(fmt(FORMAT_PCM, block_align=4), GOOD_DATA),
        "block align 4; mono 16-bit audio has 2",
    ),
    "no-data": (riff(fmt(FORMAT_PCM), chunk(b"LIST", bytes(8))), "no data chunk"),
    "no-fmt": (riff(chunk(b"LIST", bytes(8))), "no fmt chunk"),
    "data-first": (riff(GOOD_DATA, fmt(FORMAT_PCM)), "the data chunk comes before the fmt chunk"),
    "two-fmt": (riff(fmt(FORMAT_PCM), fmt(FORMAT_PCM), GOOD_DATA), "two fmt chunks"),
    "no-audio": (riff(fmt(FORMAT_PCM), chunk(b"data", b"")), "no audio in the data chunk"),
    "one-byte-audio": (riff(fmt(FORMAT_PCM), chunk(b"data", b"\x01")), "no audio in the data"),
}


def refused(name: Path | str, message: str) -> pytest.RaisesExc[ValueError]:
    """Expects a PromptError whose message is ``name: message`` (``message`` a regex)."""
    return pytest.raises(core.PromptError, match=f"^{re.escape(str(name))}: {message}")


@pytest.mark.parametrize(("data", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_a_file_that_is_not_a_playable_wav_is_refused_by_name(
    tmp_path: Path, data: bytes, message: str
) -> None:
    path = tmp_path / "prompt.wav"
    path.write_bytes(data)
    with refused(path, message):
        core.Prompt.load(path)
    with refused("upload.wav", message):
        core.Prompt.decode(data, "upload.wav")


def test_a_stereo_wav_from_the_wave_module_is_refused(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "prompt.wav", bytes(640), 8000, channels=2)
    with refused(path, "2 channels; prompts must be mono$"):
        core.Prompt.load(path)


def test_a_missing_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "missing.wav"
    with refused(path, r"cannot open \(No such file or directory\)$"):
        core.Prompt.load(path)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with refused(tmp_path, "not a regular file$"):
        core.Prompt.load(tmp_path)


def test_a_file_too_large_to_be_a_prompt_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.wav"
    with path.open("wb") as f:
        f.truncate(300 << 20)  # sparse: no disk used
    with refused(path, "314572800 bytes; prompts are at most 256 MiB$"):
        core.Prompt.load(path)


def test_prompt_errors_are_value_errors() -> None:
    assert issubclass(core.PromptError, ValueError)


# --- No bytes crash the parser ---------------------------------------------------------------

VALID = riff(chunk(b"LIST", b"abc"), fmt(FORMAT_PCM), chunk(b"data", tone(440, 8000, 10)))
VALID_EXT = riff(
    fmt(FORMAT_EXTENSIBLE, bits=8, subformat=FORMAT_ALAW),
    chunk(b"data", core.alaw_encode(tone(440, 8000, 10))),
)


def decodes_or_is_refused(data: bytes) -> None:
    """The one property: a Prompt, or a PromptError naming the input; nothing else."""
    try:
        prompt = core.Prompt.decode(data, "fuzz.wav")
    except core.PromptError as error:
        refusal = str(error)
    else:
        assert prompt.sample_rate in RATES
        assert 0 < prompt.samples <= len(data)
        assert len(prompt.pcm) == 2 * prompt.samples
        assert play_all(core.Player([prompt], rate=16000))
        return
    assert refusal.startswith("fuzz.wav: ")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from([VALID, VALID_EXT]),
    edits=st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=8),
    words=st.lists(st.tuples(st.integers(0, 76), st.integers(0, 2**32 - 1)), max_size=3),
    cut=st.integers(0, 200),
)
def test_mutated_headers_decode_or_are_refused(
    base: bytes, edits: list[tuple[int, int]], words: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(base)
    for at, value in edits:
        data[at % len(data)] = value
    for at, value in words:  # sizes, rates, tags: any 32-bit value anywhere in the header
        data[at : at + 4] = struct.pack("<I", value)
    decodes_or_is_refused(bytes(data[: len(data) - cut]))


chunk_ids = st.sampled_from([b"fmt ", b"data", b"LIST", b"fact", b"JUNK", b"\0\0\0\0"])
fmt_bodies = st.builds(
    lambda tag, channels, rate, align, bits, ext: (
        struct.pack("<HHIIHH", tag, channels, rate, (rate * 2) % 2**32, align, bits) + ext
    ),
    tag=st.sampled_from([0, 1, 3, 6, 7, 0x55, 0xFFFE]),
    channels=st.integers(0, 3),
    rate=st.sampled_from([0, 8000, 16000, 44100, 48000, 2**32 - 1]),
    align=st.integers(0, 4),
    bits=st.sampled_from([0, 8, 16, 24]),
    ext=st.one_of(
        st.just(b""),
        st.binary(max_size=30),
        st.builds(
            lambda sub: struct.pack("<HHI", 22, 16, 4) + struct.pack("<H", sub) + GUID_TAIL,
            st.sampled_from([1, 6, 7, 3]),
        ),
    ),
)
generated_chunks = st.lists(
    st.one_of(
        st.builds(lambda body: chunk(b"fmt ", body), fmt_bodies),
        st.builds(
            lambda tag, body, size: chunk(tag, body, size=size),
            chunk_ids,
            st.binary(max_size=64),
            st.one_of(st.none(), st.integers(0, 2**32 - 1)),
        ),
    ),
    max_size=5,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=generated_chunks, cut=st.integers(0, 16))
def test_generated_files_decode_or_are_refused(chunks: list[bytes], cut: int) -> None:
    data = riff(*chunks)
    decodes_or_is_refused(data[: len(data) - cut] if cut else data)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=120))
def test_any_bytes_decode_or_are_refused(data: bytes) -> None:
    decodes_or_is_refused(data)
    decodes_or_is_refused(b"RIFF\0\0\0\0WAVE" + data)


# --- The prompt cache ------------------------------------------------------------------------


def test_a_prompt_is_decoded_once_and_shared(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "shared.wav", tone(1000, 8000, 100), 8000)
    before = core.prompt_cache_info()
    first, second = core.Prompt.load(path), core.Prompt.load(str(path))
    after = core.prompt_cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
    assert first.pcm == second.pcm


def test_a_file_rewritten_in_place_is_read_again(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "menu.wav", tone(500, 8000, 100), 8000)
    assert dominant_frequency(core.Prompt.load(path).pcm, 8000, 300, 3400) == 500
    stat = path.stat()
    write_wav(path, tone(1500, 8000, 100), 8000)  # same size, same inode
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    before = core.prompt_cache_info()
    assert dominant_frequency(core.Prompt.load(path).pcm, 8000, 300, 3400) == 1500
    assert core.prompt_cache_info().misses == before.misses + 1


def test_a_file_replaced_by_rename_is_read_again(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "menu.wav", tone(500, 8000, 100), 8000)
    stat = path.stat()
    assert core.Prompt.load(path).samples == 800
    new = write_wav(tmp_path / "menu.wav.new", tone(700, 8000, 200), 8000)
    os.utime(new, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime
    new.replace(path)
    assert core.Prompt.load(path).samples == 1600


def test_a_replaced_file_that_is_broken_is_refused_not_served_stale(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "menu.wav", tone(500, 8000, 100), 8000)
    core.Prompt.load(path)
    write_wav(path, bytes(3200), 8000, channels=2)
    with pytest.raises(core.PromptError, match="2 channels"):
        core.Prompt.load(path)


def test_prompts_beyond_the_cache_limit_are_read_again_but_keep_playing(tmp_path: Path) -> None:
    paths = [write_wav(tmp_path / f"p{i}.wav", tone(500, 8000, 100), 8000) for i in range(3)]
    limit = core.prompt_cache_info().max_bytes
    try:
        core.set_prompt_cache_limit(0)  # empties the cache but for the last prompt loaded
        core.set_prompt_cache_limit(3300)  # room for two of these 1600-byte prompts
        player = core.Player([core.Prompt.load(paths[0])])
        core.Prompt.load(paths[1])
        core.Prompt.load(paths[2])  # drops paths[0], the least recently loaded
        assert core.prompt_cache_info().bytes <= 3300
        before = core.prompt_cache_info()
        for path in (paths[2], paths[1], paths[0]):
            core.Prompt.load(path)
        after = core.prompt_cache_info()
        assert (after.hits - before.hits, after.misses - before.misses) == (2, 1)
        assert len(play_all(player)) == 5  # the dropped prompt still plays
    finally:
        core.set_prompt_cache_limit(limit)
    assert core.prompt_cache_info().max_bytes == 256 << 20


def test_players_on_many_threads_share_prompts_and_agree(tmp_path: Path) -> None:
    """Loads and resampling (which run without the GIL) race from eight threads."""
    paths = [
        write_wav(tmp_path / f"p{i}.wav", tone(400 + 100 * i, 8000, 300), 8000) for i in range(4)
    ]
    results: dict[int, list[bytes]] = {}

    def work(n: int) -> None:
        prompts = [core.Prompt.load(p) for p in paths]
        results[n] = play_all(core.Player(prompts, rate=48000))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert all(frames == results[0] for frames in results.values())
    assert len(results[0]) == 4 * 15


# --- Playlists, loops, barge-in, stop --------------------------------------------------------


@pytest.fixture
def two_tones(tmp_path: Path) -> tuple[core.Prompt, core.Prompt]:
    """A 200 ms prompt at 500 Hz and a 300 ms one at 1500 Hz."""
    low = core.Prompt.load(write_wav(tmp_path / "low.wav", tone(500, 8000, 200), 8000))
    high = core.Prompt.load(write_wav(tmp_path / "high.wav", tone(1500, 16000, 300), 16000))
    return low, high


def describe(frames: list[bytes], rate: int) -> str:
    """Each frame as 'L' (500 Hz), 'H' (1500 Hz) or '.' (silence)."""

    def one(frame: bytes) -> str:
        if max(abs(s) for s in samples_of(frame)) < 100:
            return "."
        return "L" if goertzel_peak(frame, rate, 500) > goertzel_peak(frame, rate, 1500) else "H"

    return "".join(one(f) for f in frames)


def test_a_playlist_plays_its_items_in_order(two_tones: tuple[core.Prompt, core.Prompt]) -> None:
    low, high = two_tones
    player = core.Player([low, core.Silence(100), high, core.Silence(0), low], rate=8000)
    frames = play_all(player)
    assert describe(frames, 8000) == "L" * 10 + "." * 5 + "H" * 15 + "L" * 10
    assert player.position == core.PlaybackPosition(item=5, offset_ms=0, played_ms=800, loops=0)
    assert player.end == core.PlaybackEnd("finished", "")
    assert player.next_frame() is None


def test_the_position_follows_the_playlist(two_tones: tuple[core.Prompt, core.Prompt]) -> None:
    low, high = two_tones
    player = core.Player([low, high], rate=16000)
    for _ in range(13):
        player.next_frame()
    assert player.position == core.PlaybackPosition(item=1, offset_ms=60, played_ms=260, loops=0)
    assert player.end is None


def test_a_looping_playlist_starts_over_until_stopped(
    two_tones: tuple[core.Prompt, core.Prompt],
) -> None:
    low, high = two_tones
    player = core.Player([low, core.Silence(40), high], rate=48000, loop=True, barge_in="")
    frames = [player.next_frame() for _ in range(80)]
    assert all(f is not None for f in frames)
    assert describe([f for f in frames if f], 48000) == ("L" * 10 + ".." + "H" * 15) * 2 + (
        "L" * 10 + ".." + "H" * 14
    )
    assert player.position.loops == 2
    assert not player.on_digit("5")  # no barge-in digits: music on hold plays on
    player.stop()
    assert player.end == core.PlaybackEnd("stopped", "")
    assert player.next_frame() is None


def test_a_barge_in_digit_ends_playback(two_tones: tuple[core.Prompt, core.Prompt]) -> None:
    low, high = two_tones
    player = core.Player([low, high], barge_in="123#")
    player.next_frame()
    assert not player.on_digit("5")
    assert player.next_frame() is not None
    assert player.on_digit("#")
    assert player.end == core.PlaybackEnd("digit", "#")
    assert player.next_frame() is None
    assert not player.on_digit("1")  # already ended: the first reason stays
    player.stop()
    assert player.end == core.PlaybackEnd("digit", "#")


def test_every_keypad_digit_barges_in_by_default(
    two_tones: tuple[core.Prompt, core.Prompt],
) -> None:
    for digit in core.DTMF_DIGITS:
        player = core.Player([two_tones[0]])
        assert player.on_digit(digit)
        assert player.end == core.PlaybackEnd("digit", digit)


def test_a_finished_player_ignores_digits(two_tones: tuple[core.Prompt, core.Prompt]) -> None:
    player = core.Player([two_tones[0]])
    play_all(player)
    assert not player.on_digit("1")
    assert player.end == core.PlaybackEnd("finished", "")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rate": 44100}, ValueError, r"rate must be one of \(8000, 16000, 48000\): got 44100"),
        ({"barge_in": "12x"}, core.CodecError, "not a DTMF digit: 'x'"),
        ({"playlist": []}, ValueError, "at least one prompt or silence"),
        ({"playlist": [core.Silence(0)], "loop": True}, ValueError, "longer than 0 ms"),
        ({"playlist": ["menu.wav"]}, TypeError, "Prompt and Silence items: got 'menu.wav'"),
    ],
    ids=["rate", "barge-in", "empty", "empty-loop", "path"],
)
def test_bad_player_settings_are_refused(
    two_tones: tuple[core.Prompt, core.Prompt],
    kwargs: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    settings_ = {"playlist": [two_tones[0]], **kwargs}
    playlist = settings_.pop("playlist")
    with pytest.raises(error, match=message):
        core.Player(playlist, **settings_)  # type: ignore[arg-type]


def test_a_negative_silence_is_refused() -> None:
    with pytest.raises(ValueError, match="0 to 3600000 ms: got -1"):
        core.Silence(-1)


def test_a_silence_only_playlist_plays_silence() -> None:
    frames = play_all(core.Player([core.Silence(60)], rate=16000))
    assert frames == [bytes(640)] * 3


# --- Real prompts: espeak-ng speech converted by sox -----------------------------------------


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One sentence from espeak-ng, converted by sox to 8 kHz A-law and 16 kHz PCM,
    and sox's own decoding of each to raw 16-bit PCM at the file's rate."""
    folder = tmp_path_factory.mktemp("spoken")
    source = folder / "espeak.wav"
    run_tool(["espeak-ng", "-v", "en", "-w", str(source), "Press one for sales, two for support."])
    files = {
        "alaw": (["-r", "8000", "-c", "1", "-e", "a-law", "-b", "8"], 8000),
        "pcm16k": (["-r", "16000", "-c", "1", "-e", "signed-integer", "-b", "16"], 16000),
    }
    out = {}
    for name, (options, rate) in files.items():
        wav, raw = folder / f"{name}.wav", folder / f"{name}.raw"
        run_tool(["sox", str(source), *options, str(wav)])
        run_tool(["sox", str(wav), "-t", "raw", "-e", "signed-integer", "-b", "16", "-L", str(raw)])
        out[name], out[f"{name}.raw"] = wav, raw
        assert rate == int(run_tool(["soxi", "-r", str(wav)]))
    return out


def test_sox_alaw_speech_decodes_as_sox_decodes_it(spoken: dict[str, Path]) -> None:
    prompt = core.Prompt.load(spoken["alaw"])
    assert (prompt.encoding, prompt.sample_rate) == ("alaw", 8000)
    assert prompt.duration_ms > 1500
    assert prompt.pcm == little_endian(spoken["alaw.raw"].read_bytes())


def test_sox_16khz_speech_decodes_as_sox_decodes_it(spoken: dict[str, Path]) -> None:
    prompt = core.Prompt.load(spoken["pcm16k"])
    assert (prompt.encoding, prompt.sample_rate) == ("pcm16", 16000)
    assert prompt.pcm == little_endian(spoken["pcm16k.raw"].read_bytes())


def test_the_same_speech_plays_alike_from_both_files(spoken: dict[str, Path]) -> None:
    alaw, pcm = core.Prompt.load(spoken["alaw"]), core.Prompt.load(spoken["pcm16k"])
    assert alaw.duration_ms == pytest.approx(pcm.duration_ms, abs=1)
    from_alaw = play_all(core.Player([alaw], rate=8000))
    from_pcm = play_all(core.Player([pcm], rate=8000))
    assert abs(len(from_alaw) - len(from_pcm)) <= 1  # sox rounds each conversion's length
    # Frame by frame, the loudness of both follows the speech within 1.5 dB
    # (A-law's quantisation and two different resamplers differ only that much).
    loud = [(rms(a), rms(b)) for a, b in zip(from_alaw, from_pcm, strict=False) if rms(b) > 1000]
    assert len(loud) > 20
    for a, b in loud:
        assert dbm0(a) == pytest.approx(dbm0(b), abs=1.5)


def test_the_player_example_in_the_media_doc_runs(capsys: pytest.CaptureFixture[str]) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "media.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Prompt player") :]
    example = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    exec(compile(example, "docs/media.md", "exec"), {})
    assert capsys.readouterr().out == "60 PlaybackEnd(reason='digit', detail='5') 1\n"
