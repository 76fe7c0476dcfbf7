"""The method registry: every RPC method with its access rule and its models.

Domain packages register plain async functions ``handler(caller, params) -> result``
where ``params`` and ``result`` are pydantic models; they never see a socket. The
registry is also the source of the OpenRPC document served by ``rpc.discover``.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, NewType, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from pydantic.json_schema import models_json_schema

from kernel.errors import ALL_ERRORS, Forbidden, InvalidParams, Unauthenticated
from kernel.events import EventSpec
from kernel.rpc.text import nul_path

UserId = NewType("UserId", int)


class Params(BaseModel):
    """Base of every method's params: camelCase on the wire, unknown fields refused.

    Only the camelCase names are accepted from clients (validate_by_name is off), so
    one spelling is the protocol (Python code builds params with those names too).
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        extra="forbid",
        frozen=True,
    )


class Result(BaseModel):
    """Base of every method's result and every event's data: camelCase on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Empty(Params):
    pass


_EMPTY = Empty()


class IdempotentParams(Params):
    """Base of the params of mutating methods: a retry with the same key returns the
    first result (see :mod:`kernel.idempotency`)."""

    idempotency_key: str = Field(
        min_length=8,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="A unique key per intended action (e.g. a UUID); reuse it on retries",
    )


class Access(enum.Enum):
    PUBLIC = "public"  # anonymous sockets too
    USER = "user"  # an authenticated socket
    ADMIN = "admin"  # an authenticated admin


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the identity a method gets instead of a socket."""

    connection_id: int
    ip: str | None
    user_id: UserId | None = None
    role: str | None = None
    session_id: UUID | None = None

    @property
    def authenticated(self) -> bool:
        return self.user_id is not None

    def require_user(self) -> UserId:
        if self.user_id is None:
            raise Unauthenticated("this method needs an authenticated socket", reason="missing")
        return self.user_id


@dataclass(frozen=True, slots=True)
class Encoded:
    """A result already encoded as JSON, for the hottest methods (``system.ping``).

    The method is still registered with its result model (the schema clients see);
    returning the model's JSON directly skips building and serializing the model.
    """

    json: bytes


P = TypeVar("P", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)
Handler = Callable[
    [Caller, Any], Awaitable[BaseModel] | Awaitable[BaseModel | Encoded] | BaseModel | Encoded
]


@dataclass(frozen=True, slots=True)
class MethodSpec(Generic[P, R]):
    name: str
    handler: Handler
    params: type[P]
    result: type[R]
    access: Access
    summary: str
    roles: frozenset[str] | None  # for Access.USER: the roles allowed (None: all)
    inline: bool  # a plain function: run on the read path, without a task
    # Seconds the method may take before it is cancelled (None: server.request_deadline).
    deadline: float | None = None

    @property
    def idempotent(self) -> bool:
        return issubclass(self.params, IdempotentParams)

    def check_access(self, caller: Caller) -> None:
        if self.access is Access.PUBLIC:
            return
        if caller.user_id is None:
            raise Unauthenticated(f"{self.name} needs an authenticated socket", reason="missing")
        if self.access is Access.ADMIN and caller.role != "admin":
            raise Forbidden(f"{self.name} is for admins")
        if self.roles is not None and caller.role not in self.roles:
            raise Forbidden(f"{self.name} is for {', '.join(sorted(self.roles))}")

    def parse_params(self, raw: dict[str, Any] | list[Any] | None) -> P:
        if isinstance(raw, list):
            raise InvalidParams("params must be an object (by name)")
        if not raw and self.params is Empty:
            return _EMPTY  # type: ignore[return-value]
        nul = nul_path(raw)
        if nul is not None:
            message = "NUL characters are not allowed"
            raise InvalidParams(
                f"invalid params: {nul}: {message}", fields=[{"field": nul, "message": message}]
            )
        try:
            return self.params.model_validate(raw or {})
        except ValidationError as exc:
            fields = [
                {"field": ".".join(str(p) for p in err["loc"]) or "params", "message": err["msg"]}
                for err in exc.errors(include_url=False, include_input=False)
            ]
            summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:3])
            raise InvalidParams(f"invalid params: {summary}", fields=fields) from None


@dataclass
class MethodRegistry:
    methods: dict[str, MethodSpec[Any, Any]] = field(default_factory=dict)
    events: dict[str, EventSpec[Any]] = field(default_factory=dict)

    def add(
        self,
        name: str,
        handler: Handler,
        *,
        params: type[BaseModel] = Empty,
        result: type[BaseModel],
        access: Access = Access.USER,
        roles: frozenset[str] | None = None,
        summary: str = "",
        deadline: float | None = None,
    ) -> None:
        """Register ``handler`` as ``name``. ``deadline``: the seconds it may take, for a
        method that waits on something slower than the database (an SMS or payment
        gateway); None: ``server.request_deadline``."""
        if name in self.methods:
            raise ValueError(f"method {name} registered twice")
        self.methods[name] = MethodSpec(
            name=name,
            handler=handler,
            params=params,
            result=result,
            access=access,
            summary=summary or (inspect.getdoc(handler) or "").split("\n\n")[0],
            roles=roles,
            # Idempotent methods store their result: never run on the read path.
            inline=not inspect.iscoroutinefunction(handler)
            and not issubclass(params, IdempotentParams),
            deadline=deadline,
        )

    def add_event(self, spec: EventSpec[Any]) -> None:
        """Document ``spec`` (its name, model and summary) in the OpenRPC document."""
        known = self.events.get(spec.name)
        if known is not None and known is not spec:
            raise ValueError(f"event {spec.name} declared twice")
        self.events[spec.name] = spec

    def get(self, name: str) -> MethodSpec[Any, Any] | None:
        return self.methods.get(name)

    def openrpc(self, *, title: str, version: str) -> dict[str, Any]:
        """An OpenRPC 1.3 document (https://spec.open-rpc.org) built from the models."""
        models: list[tuple[type[BaseModel], Any]] = []
        for spec in self.methods.values():
            models += [(spec.params, "validation"), (spec.result, "serialization")]
        models += [(event.data, "serialization") for event in self.events.values()]
        refs, definitions = models_json_schema(
            models, by_alias=True, ref_template="#/components/schemas/{model}"
        )
        methods = []
        for spec in sorted(self.methods.values(), key=lambda s: s.name):
            params_schema = definitions.get("$defs", {}).get(spec.params.__name__, {})
            required = set(params_schema.get("required", []))
            methods.append(
                {
                    "name": spec.name,
                    "summary": spec.summary,
                    "paramStructure": "by-name",
                    "params": [
                        {"name": prop, "required": prop in required, "schema": schema}
                        for prop, schema in params_schema.get("properties", {}).items()
                    ],
                    "result": {
                        "name": "result",
                        "schema": refs[(spec.result, "serialization")],
                    },
                    "x-access": spec.access.value,
                    **({"x-roles": sorted(spec.roles)} if spec.roles else {}),
                }
            )
        events = [
            {
                "name": event.name,
                "summary": event.summary,
                "params": (
                    {"seq": {"type": "integer"}, "data": refs[(event.data, "serialization")]}
                    if event.logged
                    else refs[(event.data, "serialization")]
                ),
            }
            for event in sorted(self.events.values(), key=lambda e: e.name)
        ]
        errors = [
            {"code": err.code, "message": err.name, "data": {"retryable": err.retryable}}
            for err in ALL_ERRORS
        ]
        return {
            "openrpc": "1.3.2",
            "info": {"title": title, "version": version},
            "methods": methods,
            "components": {"schemas": definitions.get("$defs", {})},
            "x-events": events,
            "x-errors": errors,
        }
