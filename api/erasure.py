"""Closing an account (method ``me.delete``) and the erasure that admin removal shares.

Both app stores require that users can delete their account in the app. Proof is the
code of a fresh SMS login: the app asks ``auth.requestOtp`` for the account's own phone
and role, and sends the code with ``me.delete``. The code is checked as a login's is
(same guess limits; a wrong one stays counted), and consumed with the erasure, in one
transaction:

1. the account, the rows the features' closing steps will change and the event
   cursors of everyone they will tell are locked: nothing new happens to the account
   from here on (:mod:`storage.erasure`);
2. every feature's closing step runs (:meth:`Erasure.step`): bookings cancels the
   account's unfinished bookings with the usual events and notification to the other
   party, and whatever else a feature keeps outside the ``users`` row's cascades;
3. for an admin removal, the phone and email are blocked;
4. :func:`storage.erasure.erase` overwrites the names and address snapshots and deletes
   the ``users`` row: what was the account's own goes with it, what others rely on
   (finished bookings, ratings given, earnings, call and payment records) stays and
   names the account "Deleted user".

After the commit, the steps' events go out and every session's sockets close (4003,
on every instance). The phone may sign up again and gets a new, empty account; unless
an admin removed it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar
from uuid import UUID

from pydantic import Field

from api.auth import otp
from api.auth.codes import LOGIN_CODES, LoginCodes
from kernel.clock import Clock
from kernel.errors import Forbidden, NotFound
from kernel.feature import Feature, Kit, PortKey
from kernel.outbox import Outbox, StagedEvents
from kernel.rpc.registry import Caller, MethodRegistry, Params, Result
from storage import erasure
from storage.database import Database
from storage.errors import SerializationConflict
from storage.events import Executor, lock_cursors

log = logging.getLogger("rtc.erasure")

ROLES = frozenset({"customer", "provider"})
ATTEMPTS = 5  # of an erasure's transaction (see Erasure.run)
# Seconds an erasure may take: it may run again after a deadlock, which PostgreSQL takes
# a second (deadlock_timeout) to find.
DEADLINE = 30.0

T = TypeVar("T")

# Closes the sockets of ended sessions, on every instance (Kit.revoke).
RevokeHook = Callable[[int, Sequence[UUID], str], Awaitable[None]]


@dataclass(slots=True)
class Closing:
    """An account being erased, handed to each feature's closing step inside the
    erasure's transaction."""

    conn: Executor
    user_id: int
    role: str
    now: datetime
    reason: str  # in words, for the log and the sockets' close: "account deleted"
    outbox: Outbox
    staged: list[StagedEvents] = field(default_factory=list)
    sessions: list[UUID] = field(default_factory=list)  # live when it was erased
    locked: frozenset[int] = frozenset()  # users whose event cursors the erasure holds
    # Work of the steps once the erasure committed (deleting the account's files).
    after: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def may_tell(self, user_id: int) -> None:
        """A step is about to write events for ``user_id``: if its cursor was not locked
        up front, start the erasure again (taking it now could deadlock)."""
        if user_id not in self.locked:
            raise Restart(user_id)

    def stage(self) -> StagedEvents:
        """A step's events: the step writes them, they are delivered after the commit."""
        staged = self.outbox.stage()
        self.staged.append(staged)
        return staged

    def after_commit(self, run: Callable[[], Awaitable[None]]) -> None:
        """Run ``run()`` once the erasure committed (:meth:`Erasure.closed`): what must
        not happen if it rolls back, such as deleting the account's stored files. A
        failure there is logged; the step's own sweep must catch what it left."""
        self.after.append(run)


class Restart(Exception):
    """The erasure found someone to tell whose event cursor it does not hold: it runs
    again from the start (:meth:`Erasure.run`), and will lock it up front."""


Step = Callable[[Closing], Awaitable[None]]
Lock = Callable[[Closing], Awaitable[Iterable[int]]]


class Erasure:
    """The erasure of accounts, with the closing steps features add."""

    def __init__(self, outbox: Outbox, clock: Clock, revoke: RevokeHook) -> None:
        self._outbox = outbox
        self._clock = clock
        self._revoke = revoke
        self._steps: list[Step] = []
        self._locks: list[Lock] = []

    def step(self, run: Step, *, lock: Lock | None = None) -> None:
        """Run ``run`` for every account erased, once nothing new can happen to it and
        before its ``users`` row goes. ``lock``, run before that point, takes the rows
        ``run`` will change, in the order their own writers take them, and returns the
        other users ``run`` will write events for (see :mod:`storage.erasure`)."""
        self._steps.append(run)
        if lock is not None:
            self._locks.append(lock)

    async def erase(
        self, conn: Executor, user_id: int, *, reason: str, block: bool = False
    ) -> Closing | None:
        """Erase the account inside the caller's transaction (``block``: also keep its
        phone and email from coming back). None if there is no such account. After the
        commit, pass the result to :meth:`closed`."""
        account = await erasure.lock_account(conn, user_id)
        if account is None:
            return None
        closing = Closing(conn, user_id, account.role, self._clock.now(), reason, self._outbox)
        told = {user_id}
        for lock in self._locks:
            told.update(await lock(closing))
        # The event cursors of the account and of everyone the steps will tell, in one
        # statement (user id order, as every writer of events takes them): from here on
        # nothing new happens to the account (see storage.erasure).
        await lock_cursors(conn, sorted(told))
        closing.locked = frozenset(told)
        for run in self._steps:
            await run(closing)
        if block:
            await erasure.block(conn, account, reason)
        closing.sessions = await erasure.erase(conn, user_id)
        return closing

    async def run(self, db: Database, work: Callable[[Executor], Awaitable[T]]) -> T:
        """``work`` in a transaction, run again (at most :data:`ATTEMPTS` times) when
        PostgreSQL breaks a deadlock by aborting it: an erasure locks many rows that
        concurrent booking changes and creations of the account lock in another order.
        A failed attempt leaves nothing (its events are never delivered)."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with db.transaction() as conn:
                    return await work(conn)
            except Restart as restart:
                if attempt == ATTEMPTS:
                    raise SerializationConflict(f"erasure restarted {attempt} times") from None
                log.info("erasure restarts", extra={"attempt": attempt, "tell": restart.args[0]})
            except SerializationConflict:
                if attempt == ATTEMPTS:
                    raise
                log.info("erasure conflict; retrying", extra={"attempt": attempt})
                await asyncio.sleep(random.uniform(0.01, 0.05) * attempt)
        raise AssertionError("unreachable")

    async def closed(self, closing: Closing) -> None:
        """After the commit: deliver the steps' events, close the account's sockets, run
        the steps' work after the commit (:meth:`Closing.after_commit`)."""
        for staged in closing.staged:
            await staged.deliver()
        for run in closing.after:
            try:
                await run()
            except Exception:
                log.exception("a closing step's work after the commit failed")
        # Last: the revocation closes the asking socket once the answer is written.
        if closing.sessions:
            await self._revoke(closing.user_id, closing.sessions, closing.reason)
        log.info(
            "account erased",
            extra={"user": closing.user_id, "role": closing.role, "reason": closing.reason},
        )


#: The erasure, for features that add a closing step or erase (admin removal).
ERASURE: PortKey[Erasure] = PortKey("erasure")


# --- me.delete ---------------------------------------------------------------------------


class DeleteAccount(Params):
    code: str = Field(
        pattern=r"^[0-9]{4,8}$",
        description="a login code sent just now to the account's phone (auth.requestOtp)",
    )


class AccountDeleted(Result):
    ok: bool = True


class DeleteService:
    def __init__(self, db: Database, clock: Clock, codes: LoginCodes, erasure: Erasure) -> None:
        self._db = db
        self._clock = clock
        self._codes = codes
        self._erasure = erasure

    def register(self, registry: MethodRegistry) -> None:
        registry.add(
            "me.delete",
            self.delete,
            params=DeleteAccount,
            result=AccountDeleted,
            roles=ROLES,
            deadline=DEADLINE,
        )

    async def delete(self, caller: Caller, params: DeleteAccount) -> AccountDeleted:
        """Delete your account for good, proved by a fresh login code: your sessions end
        and your sockets close; open bookings are cancelled (the other side is told);
        your name, phone, email, addresses and devices are erased. Your phone may sign
        up again as a new account."""
        user_id = caller.require_user()

        async def work(conn: Executor) -> tuple[str, otp.VerifyOutcome, Closing | None]:
            account = await erasure.find_account(conn, user_id)
            if account is None:
                raise NotFound("no such account")
            if account.role not in ROLES:  # an admin's role cannot change under a session
                raise Forbidden("admins are removed by an operator (rtc-server remove-admin)")
            outcome = await self._codes.check(
                conn, account.phone, account.role, params.code, caller.ip, self._clock.now()
            )
            closing = None
            if isinstance(outcome, otp.Accepted):
                closing = await self._erasure.erase(conn, user_id, reason="account deleted")
            return account.phone, outcome, closing

        phone, outcome, closing = await self._erasure.run(self._db, work)
        self._codes.raise_refusal(outcome, phone, caller.ip)  # wrong codes stay counted
        assert closing is not None
        await self._erasure.closed(closing)
        return AccountDeleted()


class ErasureFeature(Feature):
    """Closing accounts: ``me.delete``, and the :data:`ERASURE` port that features add
    their closing steps to and admin removal erases through."""

    name = "erasure"

    async def install(self, kit: Kit) -> None:
        self.erasure = Erasure(kit.outbox, kit.clock, kit.revoke)
        kit.provide(ERASURE, self.erasure)
        DeleteService(kit.db, kit.clock, kit.port(LOGIN_CODES), self.erasure).register(kit.methods)
