"""From a text frame to responses: limits, lookup, access, validation, the call, the answer.

Everything up to the call runs synchronously on the socket's read path. Plain
(non-async) methods such as ``system.ping`` are answered there too; async methods run
as tasks, at most ``max_inflight`` per socket. Errors are answered as JSON-RPC errors;
only :class:`~kernel.errors.RpcError` details reach the client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from contextvars import ContextVar
from typing import Any, cast

from pydantic import BaseModel

from kernel.audit import AuditLog, audited
from kernel.errors import (
    CloseCode,
    InternalError,
    InvalidRequest,
    MethodNotFound,
    Overloaded,
    RateLimited,
    RpcError,
    ServiceUnavailable,
    Unauthenticated,
)
from kernel.idempotency import Idempotency
from kernel.identity import Authenticator
from kernel.rpc.codec import (
    BadItem,
    Frame,
    Request,
    decode_frame,
    encode_batch,
    encode_error,
    encode_result,
)
from kernel.rpc.registry import Access, Caller, Encoded, MethodRegistry, MethodSpec
from rtc_server.config import ConfigError, ServerSettings
from rtc_server.connection import Connection
from rtc_server.logs import LineBudget
from rtc_server.metrics import Metrics
from storage.errors import (
    DatabaseUnavailable,
    ForeignKeyViolation,
    SerializationConflict,
    StorageError,
)

log = logging.getLogger("rtc.rpc")

# The socket a core method (session.authenticate, events.ack) acts on. Domain methods
# never read it: they get a Caller.
current_connection: ContextVar[Connection] = ContextVar("current_connection")

SLOW_REQUEST_SECONDS = 1.0
# Slow-request lines (not failed ones): 10 a second on average, bursts of 50.
SLOW_LINES_PER_SECOND = 10.0
SLOW_LINES_BURST = 50
# Methods whose answer must precede the events they start: never inside a batch.
ALONE_METHODS = frozenset({"session.authenticate"})


class Dispatcher:
    def __init__(
        self,
        registry: MethodRegistry,
        settings: ServerSettings,
        metrics: Metrics,
        *,
        idempotency: Idempotency,
        log_requests: bool = False,
        audit: AuditLog | None = None,
        sessions: Authenticator | None = None,
    ) -> None:
        unknown = sorted(set(settings.method_deadlines) - set(registry.methods))
        if unknown:
            raise ConfigError(f"server.method_deadlines: no such methods {unknown}")
        self.registry = registry
        self.audit = audit  # admins' actions (kernel/audit.py)
        self.sessions = sessions  # asked whether a failed request's session still lives
        self.idempotency = idempotency
        self.settings = settings
        self.metrics = metrics
        self.log_requests = log_requests
        self._slow_lines = LineBudget(SLOW_LINES_PER_SECOND, SLOW_LINES_BURST)
        self.draining = False
        self.tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()

    def handle_text(self, conn: Connection, text: str) -> None:
        """One text frame from ``conn``. Never raises."""
        now = time.perf_counter()
        frame = decode_frame(text, max_batch=self.settings.max_inflight)
        wait = conn.bucket.take(self._loop.time(), cost=len(frame.items))
        if wait > 0:
            conn.refused_in_a_row += 1
            if conn.refused_in_a_row >= self.settings.abuse_limit:
                conn.close(CloseCode.RATE_ABUSE, "too many requests")
                return
            self._answer_all(conn, frame, RateLimited("too many requests", retry_after=wait))
            return
        conn.refused_in_a_row = 0
        if frame.batch:
            if conn.inflight + len(frame.items) > self.settings.max_inflight:
                self._answer_all(conn, frame, _overloaded())
                return
            self._spawn(conn, self._run_batch(conn, frame.items, now), weight=len(frame.items))
            return
        item = frame.items[0]
        if isinstance(item, BadItem):
            self._count_error(item.error)
            conn.send(encode_error(item.id, item.error))
            return
        self._start(conn, item, now)

    def _start(self, conn: Connection, request: Request, started: float) -> None:
        try:
            spec = self._lookup(conn, request)
            params = spec.parse_params(request.params)
        except RpcError as error:
            self._respond_error(conn, request, error, started)
            return
        if spec.inline:
            self._run_inline(conn, spec, request, params, started)
            return
        if conn.inflight >= self.settings.max_inflight:
            self._respond_error(conn, request, _overloaded(), started)
            return
        self._spawn(conn, self._run(conn, spec, request, params, started))

    def _lookup(self, conn: Connection, request: Request) -> MethodSpec[Any, Any]:
        if self.draining:
            raise ServiceUnavailable("server is restarting: reconnect")
        spec = self.registry.get(request.method)
        if spec is None:
            raise MethodNotFound(f"no method {request.method!r}")
        spec.check_access(conn.caller)
        identity = conn.identity
        if identity is not None and spec.access is not Access.PUBLIC:
            if identity.expires_at < time.time():
                raise Unauthenticated(
                    "access token expired: renew it with session.authenticate",
                    reason="token_expired",
                )
        return spec

    def _run_inline(
        self, conn: Connection, spec: MethodSpec[Any, Any], request: Request, params: Any, t0: float
    ) -> None:
        # Plain functions get no current_connection: the core methods that act on
        # the socket are async.
        try:
            # Registered as inline because it is a plain function: not an awaitable.
            result = cast(BaseModel | Encoded, spec.handler(conn.caller, params))
        except Exception as exc:  # noqa: BLE001 - every failure becomes an answer
            self._respond_error(conn, request, self._to_rpc_error(exc, spec.name), t0)
            return
        self._respond(conn, request, spec.name, result, t0)

    async def _run(
        self, conn: Connection, spec: MethodSpec[Any, Any], request: Request, params: Any, t0: float
    ) -> None:
        response = await self._call(conn, spec, request, params, t0)
        if response is not None:
            conn.send(response)

    async def _call(
        self, conn: Connection, spec: MethodSpec[Any, Any], request: Request, params: Any, t0: float
    ) -> bytes | None:
        current_connection.set(conn)  # tasks copy the context: this stays in the task
        caller = conn.caller
        deadline = self._deadline(spec)
        try:
            async with asyncio.timeout(deadline):
                if spec.idempotent:
                    result_json = await self.idempotency.run(
                        caller, spec.name, params, lambda: _awaitable(spec.handler(caller, params))
                    )
                else:
                    result_json = _to_json(await _awaitable(spec.handler(caller, params)))
        except TimeoutError:
            # Cancelled: its transaction rolled back, an idempotency key it held was
            # released; what it committed before (outbox, events) stands.
            self.metrics.rpc_deadlines.labels(spec.name).inc()
            error: RpcError = ServiceUnavailable(
                f"{spec.name} took longer than {deadline:g} s: retry"
                + (" with the same idempotencyKey" if spec.idempotent else ""),
                reason="deadline",
            )
            self._record(conn, spec.name, t0, error)
            await self._audit(caller, spec.name, params, error.name)
            return None if request.notification else encode_error(request.id, error)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an answer
            error = await self._error_of(exc, spec.name, caller)
            self._record(conn, spec.name, t0, error)
            await self._audit(caller, spec.name, params, error.name)
            return None if request.notification else encode_error(request.id, error)
        self._record(conn, spec.name, t0, None)
        await self._audit(caller, spec.name, params, "ok")
        if request.notification:
            return None
        return encode_result(request.id, result_json)

    def _deadline(self, spec: MethodSpec[Any, Any]) -> float:
        s = self.settings
        return s.method_deadlines.get(spec.name) or spec.deadline or s.request_deadline

    async def _audit(self, caller: Caller, method: str, params: Any, outcome: str) -> None:
        if self.audit is None or not audited(caller, method):
            return
        try:
            await self.audit.record(caller, method, params, outcome)
        except Exception:  # noqa: BLE001 - the action happened; its record is logged
            log.exception("admin action not audited", extra={"method": method})

    async def _run_batch(self, conn: Connection, items: list[Any], t0: float) -> None:
        async def one(item: Any) -> bytes | None:
            if isinstance(item, BadItem):
                self._count_error(item.error)
                return encode_error(item.id, item.error)
            try:
                if item.method in ALONE_METHODS:
                    raise InvalidRequest(f"{item.method} must be sent alone, not in a batch")
                spec = self._lookup(conn, item)
                params = spec.parse_params(item.params)
            except RpcError as error:
                self._count_error(error)
                return None if item.notification else encode_error(item.id, error)
            return await self._call(conn, spec, item, params, t0)

        responses = await asyncio.gather(*(one(item) for item in items))
        answered = [r for r in responses if r is not None]
        if answered:  # a batch of notifications gets no answer at all
            conn.send(encode_batch(answered))

    def _respond(
        self,
        conn: Connection,
        request: Request,
        method: str,
        result: BaseModel | Encoded,
        t0: float,
    ) -> None:
        self._record(conn, method, t0, None)
        if not request.notification:
            conn.send(encode_result(request.id, _to_json(result)))

    def _respond_error(
        self, conn: Connection, request: Request, error: RpcError, t0: float
    ) -> None:
        self._count_error(error)
        if not request.notification:
            conn.send(encode_error(request.id, error))

    def _answer_all(self, conn: Connection, frame: Frame, error: RpcError) -> None:
        """Refuse a whole frame: one error per request, shaped as the frame was."""
        self._count_error(error)
        answers = [
            encode_error(item.id, error)
            for item in frame.items
            if isinstance(item, BadItem) or not item.notification
        ]
        if not answers:
            return
        conn.send(encode_batch(answers) if frame.batch else answers[0])

    def _spawn(self, conn: Connection, coro: Awaitable[None], weight: int = 1) -> None:
        conn.inflight += weight
        task: asyncio.Task[None] = self._loop.create_task(coro)  # type: ignore[arg-type]
        self.tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            conn.inflight -= weight
            self.tasks.discard(t)

        task.add_done_callback(done)

    async def _error_of(self, exc: Exception, method: str, caller: Caller) -> RpcError:
        """:meth:`_to_rpc_error`, but a request whose account was deleted (or session
        ended) while it ran, and so wrote a reference to a user that is gone, is told its
        session ended rather than of an internal error (its socket is being closed)."""
        session = caller.session_id
        if isinstance(exc, ForeignKeyViolation) and session is not None and self.sessions:
            try:
                alive = session in await self.sessions.alive([session])
            except Exception:  # noqa: BLE001 - cannot tell: the error stands as it is
                alive = True
            if not alive:
                log.info("request outlived its session", extra={"method": method})
                return Unauthenticated("session ended; log in again", reason="session_revoked")
        return self._to_rpc_error(exc, method)

    def _to_rpc_error(self, exc: Exception, method: str) -> RpcError:
        if isinstance(exc, RpcError):
            return exc
        if isinstance(exc, DatabaseUnavailable):
            log.warning("database unavailable", extra={"method": method})
            return ServiceUnavailable("the database is unavailable; try again")
        if isinstance(exc, SerializationConflict):
            # A deadlock or serialization failure PostgreSQL broke: nothing was changed,
            # and the same request again (with its idempotencyKey) will most likely pass.
            log.warning("transaction conflict: %s", exc, extra={"method": method})
            return ServiceUnavailable(
                "a concurrent change got in the way; try again", reason="contention"
            )
        if isinstance(exc, StorageError):
            log.error("storage error", exc_info=exc, extra={"method": method})
            return InternalError("internal error")
        log.error("method failed", exc_info=exc, extra={"method": method})
        return InternalError("internal error")

    def _record(self, conn: Connection, method: str, t0: float, error: RpcError | None) -> None:
        elapsed = time.perf_counter() - t0
        self.metrics.rpc.observe(method, elapsed)
        if error is not None:
            self._count_error(error)
        slow = elapsed > SLOW_REQUEST_SECONDS
        if not (self.log_requests or slow or isinstance(error, InternalError)):
            return
        extra: dict[str, object] = {
            "method": method,
            "user": conn.user_id,
            "latency_ms": round(elapsed * 1000, 3),
            "error": error.name if error is not None else None,
        }
        if slow and not self.log_requests and not isinstance(error, InternalError):
            # Under overload every request is slow: a bounded number of lines, each
            # saying how many were left out (rtc_rpc_latency_seconds counts them all).
            left_out = self._slow_lines.take(t0 + elapsed)
            if left_out is None:
                return
            if left_out:
                extra["slow_not_logged"] = left_out
        level = logging.WARNING if error is not None or slow else logging.INFO
        log.log(level, "request", extra=extra)

    def _count_error(self, error: RpcError) -> None:
        self.metrics.rpc_errors.labels(error.name).inc()

    async def drain(self, timeout: float) -> bool:
        """Refuse new requests and wait up to ``timeout`` for those in flight."""
        self.draining = True
        if not self.tasks:
            return True
        _, pending = await asyncio.wait(set(self.tasks), timeout=timeout)
        return not pending


def _overloaded() -> Overloaded:
    return Overloaded("too many requests in flight on this socket")


async def _awaitable(value: Any) -> Any:
    if isinstance(value, Awaitable):
        return await value
    return value


def _to_json(result: BaseModel | Encoded) -> bytes:
    if isinstance(result, Encoded):
        return result.json
    return result.__pydantic_serializer__.to_json(result, by_alias=True)
