"""G.711 in the media core, bit for bit against CPython's audioop (the Sun reference).

Each test runs against the compiled core (or its sanitizer build, under
``make test-core-sanitize``) and against the pure-Python twin.
"""

from __future__ import annotations

import warnings
from array import array
from collections.abc import Callable
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

import core
from core import _reference

with warnings.catch_warnings():
    # audioop is deprecated (PEP 594) but remains the reference G.711 to compare with.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ALL_SAMPLES = array("h", range(-32768, 32768)).tobytes()
ALL_CODES = bytes(range(256))


@pytest.fixture(params=["core", "reference"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The public core (native or sanitizer build) and the Python twin."""
    return core if request.param == "core" else _reference


def test_alaw_encode_matches_audioop_for_every_sample(impl: ModuleType) -> None:
    assert impl.alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES, 2)


def test_ulaw_encode_matches_audioop_for_every_sample(impl: ModuleType) -> None:
    assert impl.ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES, 2)


def test_alaw_decode_matches_audioop_for_every_code(impl: ModuleType) -> None:
    assert impl.alaw_decode(ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)


def test_ulaw_decode_matches_audioop_for_every_code(impl: ModuleType) -> None:
    assert impl.ulaw_decode(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)


def test_decoded_codes_encode_back_to_the_same_code(impl: ModuleType) -> None:
    # Every A-law code is a fixed point; u-law's two zeros (0x7F, 0xFF) both map to 0xFF.
    assert impl.alaw_encode(impl.alaw_decode(ALL_CODES)) == ALL_CODES
    ulaw = impl.ulaw_encode(impl.ulaw_decode(ALL_CODES))
    assert ulaw == bytes(0xFF if c == 0x7F else c for c in ALL_CODES)


@pytest.mark.parametrize("encode", ["alaw_encode", "ulaw_encode"])
def test_odd_length_pcm_is_refused_with_a_message_naming_the_problem(
    impl: ModuleType, encode: str
) -> None:
    with pytest.raises(ValueError, match=r"16-bit samples: got 3 bytes \(an odd length\)"):
        getattr(impl, encode)(b"\x00\x01\x02")


def test_accepts_any_bytes_like_object_including_unaligned_views(impl: ModuleType) -> None:
    pcm = array("h", [0, 1000, -1000, 32767, -32768]).tobytes()
    expected = audioop.lin2alaw(pcm, 2)
    assert impl.alaw_encode(bytearray(pcm)) == expected
    assert impl.alaw_encode(array("h", pcm)) == expected
    unaligned = memoryview(b"\x00" + pcm)[1:]
    assert impl.alaw_encode(unaligned) == expected
    assert impl.alaw_decode(memoryview(b"\x00" + expected)[1:]) == audioop.alaw2lin(expected, 2)


def test_empty_input_gives_empty_output(impl: ModuleType) -> None:
    for name in ("alaw_encode", "ulaw_encode", "alaw_decode", "ulaw_decode"):
        assert getattr(impl, name)(b"") == b""


def test_non_buffer_input_is_a_type_error(impl: ModuleType) -> None:
    with pytest.raises(TypeError):
        impl.alaw_decode("not bytes")


PAIRS: list[tuple[str, Callable[[bytes, int], bytes]]] = [
    ("alaw_encode", audioop.lin2alaw),
    ("ulaw_encode", audioop.lin2ulaw),
]


@given(pcm=st.binary(max_size=4000).filter(lambda b: len(b) % 2 == 0))
def test_random_frames_encode_like_audioop(pcm: bytes) -> None:
    for name, reference in PAIRS:
        assert getattr(core, name)(pcm) == reference(pcm, 2)


@given(codes=st.binary(max_size=4000))
def test_random_codes_decode_like_audioop(codes: bytes) -> None:
    assert core.alaw_decode(codes) == audioop.alaw2lin(codes, 2)
    assert core.ulaw_decode(codes) == audioop.ulaw2lin(codes, 2)


def test_large_buffers_cross_the_internal_block_size() -> None:
    pcm = ALL_SAMPLES * 3
    assert core.alaw_encode(pcm) == audioop.lin2alaw(pcm, 2)
    assert core.ulaw_decode(pcm) == audioop.ulaw2lin(pcm, 2)


@pytest.mark.skipif(core.IMPLEMENTATION == "python", reason="the Python twin links no C library")
def test_core_reports_the_c_libraries_it_links() -> None:
    versions = core.library_versions()
    assert set(versions) == {"opus", "lame", "libsrtp2", "spandsp", "bcg729"}
    assert versions["opus"].startswith("libopus ")
    assert all(versions.values())
