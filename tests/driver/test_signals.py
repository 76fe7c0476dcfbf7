"""Instance-wide signals reach every subscriber of their topic, and only those."""

from __future__ import annotations

from kernel.bus import Signal
from rtc_server.app import App


async def test_signal_reaches_subscribers_of_its_topic(core: App) -> None:
    seen: list[Signal] = []
    core.signals.subscribe("catalog.changed", seen.append)
    core.signals.subscribe("catalog.changed", lambda s: (_ for _ in ()).throw(ValueError()))
    core.signals.subscribe("other", lambda s: seen.append(Signal("wrong", {})))
    await core.signals.publish("catalog.changed", {"version": 3})
    assert seen == [Signal("catalog.changed", {"version": 3})]
