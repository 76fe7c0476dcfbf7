"""What the core needs to know of login: turn an access token into an :class:`Identity`.

The login methods themselves (codes, tokens, sessions) live in :mod:`api.auth`, which
implements :class:`Authenticator`; the core only binds sockets to identities.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from kernel.feature import PortKey
from kernel.rpc.registry import UserId


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: UserId
    role: str
    session_id: UUID
    expires_at: float  # Unix time the access token expires


class Authenticator(Protocol):
    async def authenticate(self, access_token: str) -> Identity:
        """Verify the token and that its session is still alive.

        Raises :class:`kernel.errors.Unauthenticated` (with ``reason``
        ``token_expired``, ``token_invalid`` or ``session_revoked``) otherwise.
        """
        ...

    async def alive(self, session_ids: Collection[UUID]) -> set[UUID]:
        """Those of ``session_ids`` not revoked or expired, whose user is active (the
        sockets of the others are closed by the session check)."""
        ...


#: The port by which the login feature lets the socket server bind sockets to users.
AUTHENTICATOR: PortKey[Authenticator] = PortKey("authenticator")
