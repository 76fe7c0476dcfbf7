"""Scale-out: several instances sharing one Redis (see ``docs/operations.md``).

- :mod:`.wire`: bus messages as bytes on Redis channels.
- :mod:`.presence`: which users hold sockets on which instances, with instance leases
  that expire when an instance dies and epochs so a late disconnect cannot erase a
  newer connection.
- :mod:`.redis_bus`: :class:`~kernel.bus.Bus` over Redis pub/sub. An event goes
  only to the instances holding its recipients (routed by presence, one message per
  instance), what is local is delivered without Redis, and an outage degrades live
  delivery between instances without losing anything (the event log is the truth).

Without ``redis.url`` none of this runs: :class:`~kernel.bus.InProcessBus` serves.
"""
