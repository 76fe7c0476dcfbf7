"""The collector settings of a running server (rtc_server.cli.tune_collector)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from rtc_server.cli import GC_THRESHOLDS, tune_collector

# An instance taking 2,000 sockets back: about 60 long-lived tracked objects each
# (bench/README.md, "Garbage collection and the handshake's headers").
SOCKETS, OBJECTS_PER_SOCKET = 2_000, 60
CPYTHON_YOUNG_THRESHOLD = 700  # gc.get_threshold()[0] by default


@pytest.fixture
def collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def full_collections_while_sockets_open(thresholds: tuple[int, int, int]) -> int:
    gc.set_threshold(*thresholds)
    if gc.get_threshold()[2] != thresholds[2]:
        pytest.skip("this interpreter's collector has no third generation threshold")
    gc.collect()  # start from an empty oldest generation
    full = 0

    def count(phase: str, info: dict[str, int]) -> None:
        nonlocal full
        if phase == "stop" and info["generation"] == 2:
            full += 1

    gc.callbacks.append(count)
    try:
        kept = [[[] for _ in range(OBJECTS_PER_SOCKET)] for _ in range(SOCKETS)]
    finally:
        gc.callbacks.remove(count)
    assert len(kept) == SOCKETS
    return full


def test_tune_collector_freezes_start_up_and_sets_the_thresholds(collector: None) -> None:
    tune_collector()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 0


def test_sockets_coming_back_bring_no_full_collection(collector: None) -> None:
    assert full_collections_while_sockets_open((700, 10, 10)) >= 1  # CPython's defaults
    assert full_collections_while_sockets_open(GC_THRESHOLDS) == 0


def test_young_cycles_are_still_collected_by_allocation(collector: None) -> None:
    """Only full collections are rarer: a cycle that dies young is freed by the first
    young-generation collection that allocations bring, as with the defaults."""
    gc.set_threshold(*GC_THRESHOLDS)
    gc.collect()

    class Node:
        pass

    node = Node()
    node.self = node  # type: ignore[attr-defined]
    gone = weakref.ref(node)
    del node
    assert gone() is not None
    kept = [[] for _ in range(2 * CPYTHON_YOUNG_THRESHOLD)]
    assert gone() is None
    assert len(kept) == 2 * CPYTHON_YOUNG_THRESHOLD
