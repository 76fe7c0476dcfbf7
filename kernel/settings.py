"""The base of every settings section: a small frozen model, unknown keys refused.

Each feature declares its section (``[calls]``, ``[bookings]`` …) as a subclass; the
composition root (:mod:`rtc_server.config`) gathers the sections of every installed
feature into one settings model, loaded and validated once at start-up.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def public_url(url: str) -> str:
    """A ``public_url`` setting: empty, or an http(s) URL, kept without its trailing
    slash (paths are appended to it)."""
    if url and not url.startswith(("http://", "https://")):
        raise ValueError(f"{url!r}: must start with http:// or https://")
    return url.rstrip("/")


class ConfigError(Exception):
    """A setting is invalid or missing: the message names it (start-up stops, exit 2)."""
