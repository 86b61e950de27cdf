"""Codec kernels on the packet path's unit, one 20 ms frame: encode and decode
per codec, transcoding, resampling, in-band DTMF detection and tone generation.

In-band DTMF detection is also measured on a whole second of digits (50
frames in one call, so the call's overhead is spread thin), for our detector
and for spandsp 0.0.6's ``dtmf_rx`` (called through ctypes), which it replaced.

``make bench`` runs these with timing on; ``make test`` runs each once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from array import array

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import core

pytestmark = pytest.mark.skipif(
    core.IMPLEMENTATION == "python", reason="these kernels are in the compiled core only"
)

CODECS = ["PCMU", "PCMA", "G722", "G729", "opus"]


def frame(rate: int, start: int = 0) -> bytes:
    """20 ms of a 440 Hz tone at ``rate``."""
    n = rate // 50
    return array(
        "h", (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(start, start + n))
    ).tobytes()


@pytest.mark.parametrize("name", CODECS)
def test_encode_frame(benchmark: BenchmarkFixture, name: str) -> None:
    encoder = core.Encoder(name)
    pcm = frame(encoder.sample_rate)
    assert benchmark(encoder.encode, pcm)


@pytest.mark.parametrize("name", CODECS)
def test_decode_frame(benchmark: BenchmarkFixture, name: str) -> None:
    encoder, decoder = core.Encoder(name), core.Decoder(name)
    payload = encoder.encode(frame(encoder.sample_rate))
    assert len(benchmark(decoder.decode, payload)) == 2 * decoder.frame_samples


@pytest.mark.parametrize("name", CODECS)
def test_conceal_frame(benchmark: BenchmarkFixture, name: str) -> None:
    decoder = core.Decoder(name)
    assert len(benchmark(decoder.conceal)) == 2 * decoder.frame_samples


@pytest.mark.parametrize(
    ("source", "target"), [("PCMA", "opus"), ("opus", "PCMA"), ("G729", "PCMA")]
)
def test_transcode_frame(benchmark: BenchmarkFixture, source: str, target: str) -> None:
    encoder = core.Encoder(source)
    payload = encoder.encode(frame(encoder.sample_rate))
    transcoder = core.Transcoder(source, target)
    benchmark(transcoder.transcode, payload)


@pytest.mark.parametrize(
    ("in_rate", "out_rate"), [(8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000)]
)
def test_resample_frame(benchmark: BenchmarkFixture, in_rate: int, out_rate: int) -> None:
    resampler = core.Resampler(in_rate, out_rate)
    assert len(benchmark(resampler.process, frame(in_rate))) == 2 * out_rate // 50


def test_dtmf_detect_frame(benchmark: BenchmarkFixture) -> None:
    detector = core.DtmfDetector()
    assert benchmark(detector.process, frame(8000)) == ""


def one_second_of_digits() -> bytes:
    """Five digits of 100 ms with 100 ms pauses: 8000 samples."""
    generator = core.DtmfGenerator(on_ms=100, off_ms=100)
    generator.queue("12345")
    return generator.generate(8000)


def test_dtmf_detect_second(benchmark: BenchmarkFixture) -> None:
    detector = core.DtmfDetector()
    assert benchmark(detector.process, one_second_of_digits()) == "12345"


class SpandspDtmfRx:
    """spandsp's DTMF detector with its defaults, through ctypes."""

    _on_digits_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int)

    def __init__(self) -> None:
        name = ctypes.util.find_library("spandsp")
        assert name, "libspandsp is missing: run scripts/install-system-deps"
        self._lib = ctypes.CDLL(name)
        self._lib.dtmf_rx_init.restype = ctypes.c_void_p
        self._lib.dtmf_rx_init.argtypes = [ctypes.c_void_p, self._on_digits_type, ctypes.c_void_p]
        self._lib.dtmf_rx.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        self._found: list[bytes] = []
        self._callback = self._on_digits_type(self._on_digits)  # held: spandsp calls it
        self._state = self._lib.dtmf_rx_init(None, self._callback, None)

    def _on_digits(self, _: int | None, digits: bytes, length: int) -> None:
        self._found.append(digits[:length])

    def process(self, pcm: bytes) -> str:
        """The digits spandsp reports for ``pcm``."""
        self._lib.dtmf_rx(self._state, pcm, len(pcm) // 2)
        digits = b"".join(self._found).decode()
        self._found.clear()
        return digits


def test_dtmf_detect_second_spandsp(benchmark: BenchmarkFixture) -> None:
    assert benchmark(SpandspDtmfRx().process, one_second_of_digits()) == "12345"


def test_tone_generate_frame(benchmark: BenchmarkFixture) -> None:
    generator = core.ToneGenerator("ringback")
    assert len(benchmark(generator.generate, 160)) == 320
