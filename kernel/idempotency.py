"""A retried mutating request returns the first result instead of acting twice.

Methods whose params derive from :class:`~kernel.rpc.registry.IdempotentParams`
carry an ``idempotencyKey``. The first call with a key claims it, runs, and stores its
result; a retry with the same key and the same params gets that stored result; the
same key with other params is an error (``idempotency_mismatch``). A first call that
fails releases the key, so the retry runs again. Keys are per user and kept
``max_age`` seconds.

A method that changes the database in one transaction may store its result in that
same transaction (:func:`pending_result`, used by :mod:`kernel.outbox`): the change
and the answer a retry gets then commit together, so a crash between the two cannot
make a retry run the change again, and the separate completing write is saved.

Such a method can also claim its key in that transaction: its params derive from
:class:`ClaimsKeyInTransaction` too, and the first statement of its transaction carries
:func:`key_claim` (see :mod:`storage.idempotency`). The claim, the change and the
answer then commit together: one commit and one round trip less per call, and a first
call that fails or dies mid-way leaves no claimed key (nothing to release, nothing
stale). A concurrent retry with the same key waits for the first call's transaction
and then returns its answer (or runs, if the first rolled back) instead of getting
the retryable ``conflict``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass

from pydantic import BaseModel

from kernel.errors import Conflict, IdempotencyMismatch
from kernel.rpc.registry import Caller, IdempotentParams
from storage import idempotency as keys
from storage.database import Database


class ClaimsKeyInTransaction:
    """Marks the params of a method that claims its key in its own transaction (the
    first statement carries :func:`key_claim`) and stores its answer there too."""


@dataclass(slots=True)
class PendingResult:
    """The key a running first call holds; ``stored`` once its transaction wrote the result."""

    user_id: int
    key: str
    stored: bool = False
    # A method of ClaimsKeyInTransaction params: the claim its transaction makes, and
    # whether that transaction took it (handed to the first statement).
    claim: keys.KeyClaim | None = None
    handed_out: bool = False


# The key of the first call running in this task (None outside one).
_pending: ContextVar[PendingResult | None] = ContextVar("idempotency_pending", default=None)


def pending_result() -> PendingResult | None:
    """The key of the idempotent call running in this task, whose result is not stored
    yet: a transaction that stores it (``idempotency_keys.result``) sets ``stored``."""
    pending = _pending.get()
    return None if pending is None or pending.stored else pending


def key_claim() -> keys.KeyClaim | None:
    """The key claim for the first statement of this call's transaction: None outside a
    first call of a :class:`ClaimsKeyInTransaction` method. The statement claims the key
    or raises :class:`storage.idempotency.KeyTaken`."""
    pending = _pending.get()
    if pending is None or pending.claim is None:
        return None
    pending.handed_out = True
    return pending.claim


class Idempotency:
    def __init__(self, db: Database, max_age: float = 86400.0, stale_after: float = 120.0) -> None:
        self._db = db
        self.max_age = max_age
        # A first call still running after this long died with its process.
        self.stale_after = stale_after

    async def run(
        self,
        caller: Caller,
        method: str,
        params: IdempotentParams,
        call: Callable[[], Awaitable[BaseModel]],
    ) -> bytes:
        """Run ``call`` once per key; returns the result as JSON."""
        user_id = caller.require_user()
        key = params.idempotency_key
        digest = hashlib.sha256(
            params.model_dump_json(exclude={"idempotency_key"}).encode()
        ).digest()
        if isinstance(params, ClaimsKeyInTransaction):
            return await self._run_claiming_in_transaction(user_id, key, method, digest, call)
        claim = await keys.claim(self._db, user_id, key, method, digest, self.stale_after)
        if claim is None:
            raise Conflict("this idempotencyKey is contended; retry", retryable=True)
        if isinstance(claim, keys.Existing):
            return _stored(claim, method, digest)
        pending = PendingResult(user_id, key)
        token = _pending.set(pending)
        try:
            result = await call()
        except BaseException:
            await keys.release(self._db, user_id, key)
            raise
        finally:
            _pending.reset(token)
        result_json = result.__pydantic_serializer__.to_json(result, by_alias=True)
        if not pending.stored:
            await keys.complete(self._db, user_id, key, result_json.decode())
        return result_json

    async def _run_claiming_in_transaction(
        self,
        user_id: int,
        key: str,
        method: str,
        digest: bytes,
        call: Callable[[], Awaitable[BaseModel]],
    ) -> bytes:
        claim = keys.KeyClaim(user_id, key, method, digest, self.stale_after)
        for _ in range(3):
            pending = PendingResult(user_id, key, claim=claim)
            token = _pending.set(pending)
            try:
                result = await call()
            except keys.KeyTaken:
                # Rolled back. Read the key with a fresh snapshot: the first call's
                # transaction committed (or it was released again: run once more).
                found = await keys.existing(self._db, user_id, key)
                if found is None:
                    continue
                return _stored(found, method, digest)
            finally:
                _pending.reset(token)
            if not pending.handed_out or not pending.stored:
                raise RuntimeError(f"{method} did not claim its key and store its answer")
            return result.__pydantic_serializer__.to_json(result, by_alias=True)
        raise Conflict("this idempotencyKey is contended; retry", retryable=True)

    async def prune(self) -> None:
        await keys.prune(self._db, self.max_age)


def _stored(existing: keys.Existing, method: str, digest: bytes) -> bytes:
    """What a call gets when its key was claimed before: the first result, if it is the
    same request and that call finished."""
    if existing.method != method or existing.params_hash != digest:
        raise IdempotencyMismatch(
            "this idempotencyKey was used with another method or other params"
        )
    if existing.result is None:
        raise Conflict("a request with this idempotencyKey is still running", retryable=True)
    return existing.result.encode()
