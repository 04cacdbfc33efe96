"""Login throttling (登录限流): attempts per account and per client address, counted in PostgreSQL.

Every instance of the service counts against the same limit, and an attempt is counted by the same
statement that decides whether it may go ahead (``count_attempt``), so no number of concurrent requests
on any number of instances gets past a limit. A limit's window opens with the first attempt under its
key and lasts ``seconds``; the next attempt after it passed opens a new one.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, case, delete, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import RateLimited
from app.models import RateLimitCounter
from app.models.base import table_of

_COUNTERS = table_of(RateLimitCounter)
_NEW = insert(_COUNTERS).values(key=bindparam("key"), hits=1, expires_at=bindparam("expires_at"))
_EXPIRED = _COUNTERS.c.expires_at <= bindparam("now")
# One statement counts the attempt and returns the count: the upsert locks the key's row, so concurrent
# attempts are counted one after the other. Past the limit the count stays at ``limit + 1``.
_COUNT_ATTEMPT = _NEW.on_conflict_do_update(
    index_elements=[_COUNTERS.c.key],
    set_={
        "hits": case((_EXPIRED, 1), else_=func.least(_COUNTERS.c.hits, bindparam("limit")) + 1),
        "expires_at": case((_EXPIRED, _NEW.excluded.expires_at), else_=_COUNTERS.c.expires_at),
    },
).returning(_COUNTERS.c.hits, _COUNTERS.c.expires_at)


async def count_attempt(session: AsyncSession, key: str, limit: int, seconds: float, now: datetime) -> None:
    """Count one attempt under ``key``; 429 if it is beyond ``limit`` in the current window.

    Runs in the caller's transaction: committed, the attempt counts; rolled back (as it is when this
    raises), it does not — a refused attempt leaves the count at the limit."""
    params = {"key": key, "limit": limit, "now": now, "expires_at": now + timedelta(seconds=seconds)}
    hits, expires_at = (await session.execute(_COUNT_ATTEMPT, params)).one()
    if hits > limit:
        # Clamped: a request that read the clock before the one opening the window sees it end later.
        retry_after = min(max(1, math.ceil((expires_at - now).total_seconds())), math.ceil(seconds))
        raise RateLimited("尝试次数过多, 请稍后再试", retry_after_seconds=retry_after)


async def prune_counters(sessionmaker: async_sessionmaker[AsyncSession], now: datetime | None = None) -> int:
    """Delete the counters whose window has passed (the worker, every round); how many went."""
    now = now or datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        result = await session.execute(delete(RateLimitCounter).where(RateLimitCounter.expires_at <= now))
    return cast(CursorResult[Any], result).rowcount


class LoginThrottle:
    """Failed logins per account (5 per 15 min) and all logins per client address (30 per 15 min).

    An attempt is counted against the account before its password is checked (so concurrent guesses
    cannot all slip in while the first are being verified) and the count is cleared when one succeeds:
    what stays counted is failures."""

    def __init__(self, per_account: int = 5, per_address: int = 30, seconds: float = 15 * 60) -> None:
        self.per_account, self.per_address, self.seconds = per_account, per_address, seconds

    async def attempt(self, session: AsyncSession, username: str, address: str, now: datetime | None = None) -> None:
        """Count a login attempt from ``address`` for ``username`` in the session's transaction; 429
        past either limit (an attempt refused for the account does not count against the address)."""
        now = now or datetime.now(UTC)
        await count_attempt(session, f"login:address:{address}", self.per_address, self.seconds, now)
        await count_attempt(session, _account_key(username), self.per_account, self.seconds, now)

    async def succeeded(self, session: AsyncSession, username: str) -> None:
        """The password was right: the account's failures are forgotten."""
        await session.execute(delete(RateLimitCounter).where(RateLimitCounter.key == _account_key(username)))

    async def address_attempt(self, session: AsyncSession, address: str, now: datetime | None = None) -> None:
        """Count a login with no account named (WeChat's ``code``) against the client address; 429 past
        the per-address limit, which it shares with password logins."""
        now = now or datetime.now(UTC)
        await count_attempt(session, f"login:address:{address}", self.per_address, self.seconds, now)

    async def password_attempt(self, session: AsyncSession, user_id: int, now: datetime | None = None) -> None:
        """Count a password change (its old password about to be checked) for ``user_id``; 429 past the
        per-account limit: a stolen token must not buy unlimited guesses at the password."""
        now = now or datetime.now(UTC)
        await count_attempt(session, _password_key(user_id), self.per_account, self.seconds, now)

    async def password_succeeded(self, session: AsyncSession, user_id: int) -> None:
        await session.execute(delete(RateLimitCounter).where(RateLimitCounter.key == _password_key(user_id)))


def _password_key(user_id: int) -> str:
    return f"password:user:{user_id}"


def _account_key(username: str) -> str:
    return f"login:account:{username.lower()}"
