"""The per-socket cursor: exactly once, in order, whatever order live events arrive in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kernel.publisher import chunk_sizes
from rtc_server.delivery import DeliveryCursor


def f(seq: int) -> bytes:
    return b"e%d" % seq


def live(start: int = 0) -> DeliveryCursor:
    cursor = DeliveryCursor(max_pending=8)
    assert cursor.start_live(start) == []
    return cursor


def test_in_order_events_pass_straight_through() -> None:
    cursor = live()
    assert cursor.offer(1, f(1)) == [f(1)]
    assert cursor.offer(2, f(2)) == [f(2)]
    assert not cursor.has_gap


def test_duplicates_are_dropped() -> None:
    cursor = live(5)
    assert cursor.offer(5, f(5)) == []
    assert cursor.offer(3, f(3)) == []
    assert cursor.offer(6, f(6)) == [f(6)]
    assert cursor.offer(6, f(6)) == []


def test_early_event_waits_for_the_missing_one() -> None:
    cursor = live()
    assert cursor.offer(2, f(2)) == []
    assert cursor.has_gap and cursor.gap() == (0, 2)
    assert cursor.offer(1, f(1)) == [f(1), f(2)]
    assert not cursor.has_gap


def test_events_during_replay_wait_then_release_after_the_seam() -> None:
    cursor = DeliveryCursor()
    assert cursor.offer(4, f(4)) == []  # arrived live while replaying 1..4
    assert cursor.offer(5, f(5)) == []
    assert not cursor.has_gap  # replaying: not a gap yet
    assert cursor.start_live(4) == [f(5)]  # 4 came from the replay: not twice


def test_fill_from_log_closes_the_gap() -> None:
    cursor = live()
    cursor.offer(3, f(3))
    after, upto = cursor.gap()
    assert (after, upto) == (0, 3)
    assert cursor.fill([(1, f(1)), (2, f(2)), (3, f(3))], upto) == [f(1), f(2), f(3)]
    assert not cursor.has_gap and cursor.last_sent == 3


def test_fill_skips_what_the_log_no_longer_holds() -> None:
    cursor = live()
    cursor.offer(4, f(4))
    # 1..3 were pruned: the log only has 4.
    assert cursor.fill([(4, f(4))], 4) == [f(4)]
    cursor2 = live()
    cursor2.offer(4, f(4))
    assert cursor2.fill([], 4) == [f(4)]
    assert cursor2.last_sent == 4


def test_pending_is_bounded_and_keeps_the_lowest() -> None:
    cursor = live()
    for seq in range(20, 1, -1):
        cursor.offer(seq, f(seq))
    assert len(cursor.pending) == 8
    assert min(cursor.pending) == 2


@given(st.permutations(list(range(1, 30))), st.integers(0, 29))
def test_any_arrival_order_with_fills_delivers_each_once_in_order(
    order: list[int], cut: int
) -> None:
    """Live events in any order, some lost (read from the 'log' by fills)."""
    log = {seq: f(seq) for seq in range(1, 30)}
    cursor = DeliveryCursor(max_pending=4)
    sent: list[bytes] = []
    for seq in order[:cut]:
        cursor.offer(seq, log[seq])  # arrive during the replay
    replayed_upto = 3
    sent += [log[s] for s in range(1, replayed_upto + 1)]
    sent += cursor.start_live(replayed_upto)
    for seq in order[cut:]:
        if seq % 5 == 0:
            continue  # lost on the bus
        sent += cursor.offer(seq, log[seq])
        if cursor.has_gap and len(cursor.pending) > 2:
            after, upto = cursor.gap()
            sent += cursor.fill([(s, log[s]) for s in range(after + 1, upto + 1)], upto)
    while cursor.has_gap or cursor.last_sent < 29:
        after, _ = cursor.last_sent, 29
        sent += cursor.fill([(s, log[s]) for s in range(after + 1, 30)], 29)
    assert sent == [log[s] for s in range(1, 30)]


def test_events_dropped_from_a_full_pending_are_still_owed() -> None:
    cursor = DeliveryCursor(max_pending=2)
    for seq in (1, 2, 3, 4):  # arrive during a replay that covers nothing
        cursor.offer(seq, f(seq))
    assert cursor.start_live(0) == [f(1), f(2)]
    assert cursor.has_gap and cursor.gap() == (2, 4)
    assert cursor.fill([(3, f(3)), (4, f(4))], 4) == [f(3), f(4)]
    assert not cursor.has_gap


def test_fan_out_chunks_start_small_and_grow_to_the_limit() -> None:
    assert chunk_sizes(5000, 250) == [50, 100, 200] + [250] * 18 + [150]
    assert sum(chunk_sizes(5000, 250)) == 5000
    assert chunk_sizes(30, 250) == [30]
    assert chunk_sizes(7, 2) == [2, 2, 2, 1]
    assert chunk_sizes(0, 250) == []
