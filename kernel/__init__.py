"""The kernel: everything domain code (``api``, ``signalling``, ``recordings``) may use.

Errors, the clock, the RPC types (params, results, the registry), typed event and job
specs, the outbox and the publisher, the job queue, instance-wide signals, messages to
one device, push notices, and the :class:`kernel.feature.Feature` protocol by which a
feature installs itself. It imports no websockets, redis, aiohttp or aiortc: the socket
server, the Redis bus and the HTTP port live in :mod:`rtc_server`, which wires them
(``scripts/lint`` checks the layering with import-linter; ``docs/architecture.md``
draws it).
"""
