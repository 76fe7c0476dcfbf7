"""Bookings as live jobs: ``rules`` (the pure state machine), ``models`` (the wire
models), ``service`` (the ``bookings.*`` methods); queries in :mod:`storage.bookings`."""
