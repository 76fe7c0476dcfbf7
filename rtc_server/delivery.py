"""Per-socket event ordering: each socket receives a user's events once, in ``seq`` order.

Pure logic, no I/O. The event log in PostgreSQL is the truth; live delivery over the
bus is the fast path, and it may arrive late, early or twice (several publishers,
several instances, a replay running while new events are published). The cursor turns
that into exactly-once, in-order delivery per socket:

- while the socket replays what it missed, live events wait in ``pending``;
- an event at or below the last sent ``seq`` is a duplicate and is dropped;
- an event ahead of the next expected ``seq`` waits; if the gap does not close
  within the gap timeout, the driver reads the gap from the log (:meth:`gap`) and
  feeds it back with :meth:`fill`;
- ``pending`` is bounded: what overflows is simply read from the log later (the
  cursor remembers the highest ``seq`` it was offered, so a dropped event is a gap).
"""

from __future__ import annotations


class DeliveryCursor:
    __slots__ = ("last_sent", "highest", "replaying", "pending", "max_pending")

    def __init__(self, max_pending: int = 256) -> None:
        self.last_sent = 0
        self.highest = 0  # highest seq offered: anything above last_sent is owed
        self.replaying = True
        self.pending: dict[int, bytes] = {}
        self.max_pending = max_pending

    def start_live(self, last_sent: int) -> list[bytes]:
        """The replay sent everything up to ``last_sent``: release what waited."""
        self.replaying = False
        self.last_sent = last_sent
        self.highest = max(self.highest, last_sent)
        return self._drain()

    def offer(self, seq: int, frame: bytes) -> list[bytes]:
        """A live event arrived; returns the frames to send now, in order."""
        if seq <= self.last_sent and not self.replaying:
            return []
        self.highest = max(self.highest, seq)
        if self.replaying or seq != self.last_sent + 1:
            if len(self.pending) < self.max_pending or seq < max(self.pending):
                self.pending[seq] = frame
                if len(self.pending) > self.max_pending:
                    del self.pending[max(self.pending)]  # re-read from the log later
            return []
        self.last_sent = seq
        return [frame, *self._drain()]

    @property
    def has_gap(self) -> bool:
        return not self.replaying and self.highest > self.last_sent

    def gap(self) -> tuple[int, int]:
        """The ``(after, upto)`` range of seqs to read from the log to close the gap."""
        return self.last_sent, self.highest

    def fill(self, events: list[tuple[int, bytes]], upto: int) -> list[bytes]:
        """Events read from the log for :meth:`gap`, in seq order.

        Seqs in the range that the log no longer holds (pruned) are skipped, so one
        lost event cannot stall the socket forever.
        """
        out: list[bytes] = []
        for seq, frame in events:
            if seq > self.last_sent:
                self.pending.pop(seq, None)
                self.last_sent = seq
                out.append(frame)
        out += self._drain()
        if self.last_sent < upto:
            # Whatever is still missing up to ``upto`` is gone from the log.
            waiting = [seq for seq in self.pending if seq <= upto]
            self.last_sent = min(waiting) - 1 if waiting else upto
            out += self._drain()
        return out

    def _drain(self) -> list[bytes]:
        out: list[bytes] = []
        for seq in [s for s in self.pending if s <= self.last_sent]:
            del self.pending[seq]
        while (frame := self.pending.pop(self.last_sent + 1, None)) is not None:
            self.last_sent += 1
            out.append(frame)
        return out
