"""Admins' actions, kept: who did what, when, from where, and how it ended.

The dispatcher hands every request of an admin (but the core's and login's own
methods) to the :data:`AUDIT` port after it ran; the admin feature provides it
(``admin_actions``, listed by ``admin.audit.list``).
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

from kernel.feature import PortKey
from kernel.rpc.registry import Caller

# Methods not audited: the socket's own plumbing, and login (its params are secrets).
UNAUDITED_PREFIXES = ("auth.", "system.", "rpc.", "session.", "events.")


class AuditLog(Protocol):
    async def record(
        self, caller: Caller, method: str, params: BaseModel, outcome: str
    ) -> None: ...


def audited(caller: Caller, method: str) -> bool:
    return caller.role == "admin" and not method.startswith(UNAUDITED_PREFIXES)


AUDIT: PortKey[AuditLog] = PortKey("audit")
