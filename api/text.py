"""Field types shared by the domain methods: trimmed, length-limited text.

Use as ``Annotated[str, Trimmed(2, 100), NO_CONTROL]``; a few common ones are named.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints


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
