"""Receive statistics (RFC 3550 A.1, A.3, A.8), native against the reference, packet by packet."""

from __future__ import annotations

from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st

import core
from core import Disposition, _reference

FRAME = 160  # timestamp units per 20 ms packet at 8 kHz


def feed(stats: core.ReceiveStats, seqs: list[int], start: int = 0) -> list[Disposition]:
    """Packets arriving exactly on time: no jitter."""
    return [stats.update(s & 0xFFFF, (s - start) * FRAME, (s - start) * FRAME + 7) for s in seqs]


def test_source_is_counted_once_probation_passes(twin: ModuleType) -> None:
    stats = twin.ReceiveStats()
    assert feed(stats, [100, 101, 102]) == [
        Disposition.PROBATION, Disposition.IN_ORDER, Disposition.IN_ORDER,
    ]  # fmt: skip
    snap = stats.snapshot()
    assert snap.validated
    assert (snap.expected, snap.received, snap.lost) == (2, 2, 0)


def test_sequence_wrap_extends_the_highest_sequence(twin: ModuleType) -> None:
    stats = twin.ReceiveStats()
    feed(stats, list(range(65530, 65550)), start=65530)
    snap = stats.snapshot()
    assert snap.extended_highest == 65536 + (65549 - 65536)
    assert (snap.expected, snap.lost) == (19, 0)


def test_probation_passes_across_the_wrap(twin: ModuleType) -> None:
    stats = twin.ReceiveStats()
    assert feed(stats, [65535, 0]) == [Disposition.PROBATION, Disposition.IN_ORDER]


def test_gaps_are_cumulative_loss_and_the_interval_fraction(twin: ModuleType) -> None:
    stats = twin.ReceiveStats()
    feed(stats, [*range(1, 11), *range(13, 21)])  # 11 and 12 lost
    snap = stats.snapshot()
    assert (snap.expected, snap.received, snap.lost) == (19, 17, 2)
    fraction, cumulative, highest, _ = stats.report()
    assert (fraction, cumulative, highest) == (2 * 256 // 19, 2, 20)
    feed(stats, range(21, 31), start=0)  # type: ignore[arg-type]
    assert stats.report()[0] == 0  # the next interval lost nothing


def test_duplicates_are_counted_apart_and_received_as_rfc_3550_says(twin: ModuleType) -> None:
    stats = twin.ReceiveStats()
    dispositions = feed(stats, [1, 2, 3, 3, 4, 2])
    assert dispositions[3] == Disposition.DUPLICATE
    assert dispositions[5] == Disposition.DUPLICATE
    snap = stats.snapshot()
    assert snap.duplicates == 2
    assert snap.received == 5  # A.1 counts duplicates as received ...
    assert snap.lost == -2  # ... so loss goes negative, as the RFC notes


def test_late_packets_are_reordered_not_lost(twin: ModuleType) -> None:
    stats = twin.ReceiveStats()
    dispositions = feed(stats, [1, 2, 4, 3, 5, 7, 6])
    assert dispositions.count(Disposition.REORDERED) == 2
    snap = stats.snapshot()
    assert (snap.reordered, snap.duplicates, snap.lost) == (2, 0, 0)


def test_a_large_jump_counts_only_when_the_sender_confirms_a_restart(twin: ModuleType) -> None:
    stats = twin.ReceiveStats()
    feed(stats, [1, 2, 3])
    assert stats.update(20000, 0, 0) == Disposition.BAD_JUMP
    assert stats.snapshot().received == 2
    assert stats.update(20001, 160, 160) == Disposition.RESTARTED
    snap = stats.snapshot()
    assert (snap.extended_highest, snap.expected, snap.received) == (20001, 1, 1)


def test_jitter_follows_the_a8_estimator(twin: ModuleType) -> None:
    stats = twin.ReceiveStats()
    # Every other packet 40 units late: |D| alternates 40, so J -> 40 over time.
    for i in range(400):
        stats.update(i, i * FRAME, i * FRAME + (40 if i % 2 else 0))
    assert 38 <= stats.snapshot().jitter <= 40


def test_steady_arrival_has_no_jitter(twin: ModuleType) -> None:
    stats = twin.ReceiveStats()
    feed(stats, list(range(50)))
    assert stats.snapshot().jitter == 0


packets = st.lists(
    st.tuples(
        st.sampled_from([1, 1, 1, 1, 2, 0, -1, -3, 5, 3001, -200, 40000]),
        st.integers(0, 2000),
    ),
    max_size=200,
)


@settings(max_examples=150)
@given(start=st.integers(0, 65535), steps=packets)
def test_native_matches_the_reference_packet_for_packet(
    start: int, steps: list[tuple[int, int]]
) -> None:
    native = core._loader.impl.ReceiveStats()
    reference = _reference.ReceiveStats()
    seq, now = start, 0
    for delta, delay in steps:
        seq = (seq + delta) & 0xFFFF
        now += 160
        ts = (seq * 160) & 0xFFFFFFFF
        arrival = (now + delay) & 0xFFFFFFFF
        assert native.update(seq, ts, arrival) == reference.update(seq, ts, arrival)
        assert native.snapshot() == reference.snapshot()
    assert native.report() == reference.report()
