"""Payloads from the network are untrusted: any bytes either decode or raise
CodecError, never crash (these also run under ASan and UBSan)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import core

pytestmark = pytest.mark.skipif(
    core.IMPLEMENTATION == "python", reason="codecs beyond G.711 are in the compiled core only"
)

CODECS = ["PCMU", "PCMA", "G722", "G729", "opus"]


@pytest.mark.parametrize("name", CODECS)
@settings(max_examples=60, deadline=None)
@given(payloads=st.lists(st.binary(min_size=0, max_size=400), min_size=1, max_size=4))
def test_any_payload_decodes_or_is_refused(name: str, payloads: list[bytes]) -> None:
    decoder = core.Decoder(name)
    for payload in payloads:
        try:
            pcm = decoder.decode(payload)
        except core.CodecError:
            continue
        assert len(pcm) % 2 == 0
        assert len(decoder.conceal_with_next(payload)) == 2 * decoder.frame_samples
    assert len(decoder.conceal()) == 2 * decoder.frame_samples


@settings(max_examples=60, deadline=None)
@given(timestamps=st.lists(st.integers(0, 2**32 - 1), max_size=20), payload=st.binary(max_size=8))
def test_receiver_survives_any_packets(timestamps: list[int], payload: bytes) -> None:
    receiver = core.TelephoneEventReceiver()
    for timestamp in timestamps:
        try:
            receiver.receive(timestamp, payload)
        except core.CodecError:
            assert len(payload) < 4


@settings(max_examples=40, deadline=None)
@given(
    rates=st.sampled_from([(8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000)]),
    cuts=st.lists(st.integers(0, 600), max_size=8),
    data=st.binary(min_size=1200, max_size=1200),
)
def test_resampler_output_does_not_depend_on_how_the_stream_is_cut(
    rates: tuple[int, int], cuts: list[int], data: bytes
) -> None:
    whole = core.Resampler(*rates).process(data)
    pieces = core.Resampler(*rates)
    bounds = [0, *sorted(2 * (c // 2) for c in cuts), len(data)]
    joined = b"".join(pieces.process(data[a:b]) for a, b in itertools.pairwise(bounds))
    assert joined == whole
