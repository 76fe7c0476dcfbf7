"""The benchmark's database: an embedded PostgreSQL in a temporary folder, migrated,
with users that each have one live login session, and access tokens for them.

Users and sessions are made with two bulk statements (no login flow: that is not
what is measured); tokens are minted with the server's own :class:`AccessTokens`
under the JWT secret the server is started with.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from api.auth.tokens import AccessTokens
from storage.database import Database, PoolSettings
from storage.embedded import EmbeddedPostgres
from storage.migrate import apply_migrations

# Long enough for any run; the server closes sockets whose token expired.
TOKEN_TTL = timedelta(hours=6)

_CREATE_USERS = """
WITH new_users AS (
    INSERT INTO users (phone, role, full_name, is_verified)
    SELECT '+91' || (7000000000 + g)::text, 'customer', 'Bench user ' || g, true
    FROM generate_series(1, $1::int) AS g
    RETURNING id
)
INSERT INTO auth_sessions (id, user_id, device, ip, expires_at)
SELECT gen_random_uuid(), id, '{"platform": "other", "model": "bench"}'::jsonb,
       '127.0.0.1', now() + interval '1 day'
FROM new_users
RETURNING user_id, id
"""

# Every event of the earlier runs counts as seen, so no socket of the next run
# replays them at its handshake (a benchmark run must not depend on the one before).
_FORGET_EVENTS = """
UPDATE user_event_cursors SET acked_seq = last_seq WHERE acked_seq <> last_seq
"""


def start_postgres(data_dir: Path, cpus: set[int]) -> EmbeddedPostgres:
    """Start the embedded PostgreSQL with its processes pinned to ``cpus``."""
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)  # inherited by pg_ctl, the postmaster, its backends
    try:
        return EmbeddedPostgres.start(data_dir)
    finally:
        os.sched_setaffinity(0, previous)


async def connect(dsn: str) -> Database:
    return await Database.connect(PoolSettings(dsn=dsn, min_size=1, max_size=2))


async def create_users(dsn: str, count: int, jwt_secret: bytes) -> list[str]:
    """Migrate, create ``count`` users with a session each; one access token per user."""
    db = await connect(dsn)
    try:
        await apply_migrations(db)
        rows = await db.fetch(_CREATE_USERS, count)
        await db.execute("VACUUM ANALYZE")  # so autovacuum has nothing to do mid-run
    finally:
        await db.close()
    issuer = AccessTokens(jwt_secret, ttl=TOKEN_TTL)
    now = datetime.now(UTC)
    sessions = sorted((row["user_id"], UUID(str(row["id"]))) for row in rows)
    return [issuer.issue(user_id, "customer", sid, now)[0] for user_id, sid in sessions]


async def forget_events(dsn: str) -> None:
    db = await connect(dsn)
    try:
        await db.execute(_FORGET_EVENTS)
        await db.execute("DELETE FROM user_events")
        await db.execute("VACUUM ANALYZE")
    finally:
        await db.close()
