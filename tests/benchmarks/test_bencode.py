"""Bencode for rtpengine's ng protocol: known encodings, typed errors, and a fuzzed decoder."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import bencode
from benchmarks.bencode import BencodeError

values = st.recursive(
    st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.binary(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)


def test_ping_encodes_as_the_protocol_documentation_shows() -> None:
    assert bencode.encode({"command": "ping"}) == b"d7:command4:pinge"


def test_reply_with_unsorted_keys_decodes_as_rtpengine_sends_it() -> None:
    reply = b"d6:result2:ok3:sdp3:v=010:recordingsl6:a.pcapee"
    assert bencode.decode(reply) == {b"result": b"ok", b"sdp": b"v=0", b"recordings": [b"a.pcap"]}


def test_integers_and_nested_lists_round_trip() -> None:
    assert bencode.decode(bencode.encode([0, -7, [b"", 12345678901234567890]])) == [
        0,
        -7,
        [b"", 12345678901234567890],
    ]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "data ends at offset 0"),
        (b"i12", "no closing 'e'"),
        (b"i012e", "not canonical"),
        (b"i-0e", "not canonical"),
        (b"ie", "not up to 20 decimal digits"),
        (b"i" + b"9" * 30 + b"e", "not up to 20 decimal digits"),
        (b"5:ab", "claims 5 bytes, 2 remain"),
        (b"05:abcde", "not canonical"),
        (b"di1e1:ae", "key at offset 1 is not a byte string"),
        (b"d1:ai1e1:ai2ee", "has the key b'a' twice"),
        (b"l" * 100 + b"e" * 100, "nesting deeper than 64"),
        (b"4:pingx", "1 trailing bytes"),
        (b"x", "unexpected byte b'x' at offset 0"),
        (b"l1:a", "data ends at offset 4"),
    ],
)
def test_malformed_bencode_is_a_typed_error_naming_the_problem(data: bytes, problem: str) -> None:
    with pytest.raises(BencodeError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        bencode.decode(data)


def test_booleans_are_refused_because_the_protocol_spells_flags_out() -> None:
    with pytest.raises(TypeError, match="no booleans"):
        bencode.encode({"record call": True})


@given(values)
@settings(max_examples=300, deadline=None)
def test_every_value_survives_encoding_and_decoding(value: bencode.Value) -> None:
    assert bencode.decode(bencode.encode(value)) == value


@given(st.binary(max_size=200))
@settings(max_examples=2000, deadline=None)
def test_any_bytes_decode_to_a_value_or_a_bencode_error(data: bytes) -> None:
    with contextlib.suppress(BencodeError):
        bencode.decode(data)


@given(values, st.integers(min_value=0, max_value=199), st.binary(min_size=1, max_size=3))
@settings(max_examples=1000, deadline=None)
def test_corrupted_messages_decode_or_fail_cleanly(
    value: bencode.Value, at: int, junk: bytes
) -> None:
    data = bytearray(bencode.encode(value))
    at = min(at, len(data))
    data[at : at + len(junk)] = junk
    with contextlib.suppress(BencodeError):
        bencode.decode(bytes(data))
