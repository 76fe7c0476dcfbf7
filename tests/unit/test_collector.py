"""The collector settings of a running server (rtc_server.cli.tune_collector)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from rtc_server.cli import GC_THRESHOLDS, tune_collector


@pytest.fixture
def collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_long_lived_objects_do_not_bring_a_full_collection_each(collector: None) -> None:
    """An instance taking 2,000 sockets back (60 long-lived objects each, as measured
    in bench/README.md): CPython's defaults run several full collections meanwhile,
    ours none; young cycles are still collected."""
    tune_collector()
    assert gc.get_threshold() == GC_THRESHOLDS
    full = 0

    def count(phase: str, info: dict[str, int]) -> None:
        nonlocal full
        if phase == "stop" and info["generation"] == 2:
            full += 1

    gc.callbacks.append(count)
    try:
        kept = [[[] for _ in range(60)] for _ in range(2_000)]
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect(0) >= 1  # the young cycle
    finally:
        gc.callbacks.remove(count)
    assert full == 0
    assert len(kept) == 2_000
