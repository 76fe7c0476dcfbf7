"""Paytm Payment Gateway: our checksum, the gateway client and a local simulator.

- :mod:`.checksum`  Paytm's checksum (``signature`` / ``CHECKSUMHASH``), on cryptography.
- :mod:`.jsonspan`  the exact text of a top-level JSON value, to verify signed bodies.
- :mod:`.wire`      the gateway's paths, amounts and result codes, shared by both sides.
- :mod:`.errors`    the client's exception tree.
- :mod:`.client`    :class:`~.client.PaytmClient`, the server-to-server API client.
- :mod:`.ledger`    the simulator's orders and refunds: pure rules, no I/O.
- :mod:`.simulator` :class:`~.simulator.PaytmSimulator`, a local staging gateway.
"""
