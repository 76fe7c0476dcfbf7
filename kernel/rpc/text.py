"""Field types shared by the domain methods (``api``, ``signalling``): trimmed,
length-limited text. Part of the RPC layer: DESIGN.md lets domain packages import the
core's small interfaces, not each other.

Use as ``Annotated[str, Trimmed(2, 100), NO_CONTROL]``; a few common ones are named.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from pydantic import AfterValidator, BaseModel, StringConstraints
from pydantic.alias_generators import to_camel

from kernel.errors import InvalidParams


def _no_control_characters(value: str) -> str:
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise ValueError("control characters are not allowed")
    return value


NO_CONTROL = AfterValidator(_no_control_characters)


def Trimmed(min_length: int, max_length: int) -> StringConstraints:  # noqa: N802 - a type
    """Surrounding whitespace removed, then the length held to [min_length, max_length]."""
    return StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)


Slug = Annotated[
    str, StringConstraints(min_length=2, max_length=64, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
]
FullName = Annotated[str, Trimmed(2, 100), NO_CONTROL]


def invalid(*fields: tuple[str, str]) -> InvalidParams:
    """-32602 naming each ``(camelCase field, message)``: for rules a validator checks
    across fields, raised from inside it (pydantic lets non-ValueErrors through)."""
    summary = "; ".join(f"{field}: {message}" for field, message in fields)
    return InvalidParams(
        f"invalid params: {summary}",
        fields=[{"field": field, "message": message} for field, message in fields],
    )


def refuse_nulls(model: BaseModel, names: Iterable[str]) -> None:
    """Refuse an explicit null for the optional fields of a partial update that have no
    null meaning (omitted: unchanged)."""
    for name in sorted(names):
        if name in model.model_fields_set and getattr(model, name) is None:
            raise invalid((to_camel(name), "cannot be null"))
