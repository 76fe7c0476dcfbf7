"""The benchmark of the server core: ``python -m bench`` (see bench/README.md).

Processes: the runner (:mod:`bench.run`) starts an embedded PostgreSQL, the server
under test (:mod:`bench.server`, our real ``App``; or :mod:`bench.bare_server`, the
bare websockets ceiling) pinned to core 0, and one load client (:mod:`bench.load`)
pinned to core 1 per measurement. Results are printed as tables and written to
``bench/results/<timestamp>.json``.
"""
