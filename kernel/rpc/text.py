"""The text people write and other people read, and the field types shared by the
domain methods (``api``, ``signalling``).

Every human-visible string a client sends is one of two kinds, trimmed and
length-limited:

- ``Annotated[str, Line(2, 100)]``: one line (names, titles, cities, reasons): no
  control character at all (no line break: a name must not be able to draw a second
  line under itself, "Call +91…", on someone else's screen), no bidirectional
  override (which reorders what is shown);
- ``Annotated[str, Paragraphs(10, 2000)]``: text that may have line breaks
  (descriptions, reviews, addresses): ``\n`` and tabs only (``\r\n`` becomes
  ``\n``), nothing else of the above.

A NUL character in any string of any params is refused before the method's model sees
it (:func:`nul_path`): -32602, never a database error.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, GetCoreSchemaHandler, StringConstraints
from pydantic.alias_generators import to_camel
from pydantic_core import core_schema

from kernel.errors import InvalidParams

# Bidirectional embeddings, overrides and isolates (Unicode TR 9): they reorder what
# is displayed after them. Marks (LRM, RLM, ALM) are harmless and allowed.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Line and paragraph separators draw a new line like \n does.
_SEPARATORS = frozenset("\u2028\u2029\x85")


def _unsafe(c: str, line_breaks: bool) -> bool:
    if c in _BIDI_CONTROLS or c in _SEPARATORS:
        return True
    if unicodedata.category(c) == "Cc":
        return not (line_breaks and c in "\n\t")
    return False


def one_line(value: str) -> str:
    if any(_unsafe(c, False) for c in value):
        raise ValueError("one line of text: no line breaks or control characters")
    return value


def paragraphs(value: str) -> str:
    value = value.replace("\r\n", "\n")
    if any(_unsafe(c, True) for c in value):
        raise ValueError("control characters are not allowed")
    return value


@dataclass(frozen=True, slots=True)
class _Text:
    """Metadata of a text field: trimmed, held to a length, then checked."""

    min_length: int
    max_length: int
    line_breaks: bool

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        text = core_schema.str_schema(
            strip_whitespace=True, min_length=self.min_length, max_length=self.max_length
        )
        check = paragraphs if self.line_breaks else one_line
        return core_schema.no_info_after_validator_function(check, text)


def Line(min_length: int, max_length: int) -> _Text:  # noqa: N802 - reads as a type
    """One line of text, trimmed, ``min_length`` to ``max_length`` characters."""
    return _Text(min_length, max_length, line_breaks=False)


def Paragraphs(min_length: int, max_length: int) -> _Text:  # noqa: N802 - reads as a type
    """Text that may have line breaks, trimmed, ``min_length`` to ``max_length``."""
    return _Text(min_length, max_length, line_breaks=True)


# For other string types (an email, a search) that must not carry control characters.
NO_CONTROL = AfterValidator(one_line)


def nul_path(value: Any, path: str = "") -> str | None:
    """The camelCase path of the first string (or key) holding a NUL character in a
    decoded params value, or None."""
    if isinstance(value, str):
        return (path or "params") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return here
            found = nul_path(item, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = nul_path(item, f"{path}.{i}" if path else str(i))
            if found is not None:
                return found
    return None


def Trimmed(min_length: int, max_length: int) -> StringConstraints:  # noqa: N802 - a type
    """Surrounding whitespace removed, then the length held to [min_length, max_length]."""
    return StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)


Slug = Annotated[
    str, StringConstraints(min_length=2, max_length=64, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
]
FullName = Annotated[str, Line(2, 100)]


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
