"""Login throttling (登录限流): a sliding window of attempts per account and per client address.

Kept in process memory: each service instance limits on its own, so N instances allow at most N times
the limit — still a hard ceiling on password guessing, with no database write per failed login.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque

from app.errors import RateLimited


class SlidingWindow:
    def __init__(self, limit: int, seconds: float) -> None:
        self.limit, self.seconds = limit, seconds
        self._hits: dict[str, deque[float]] = defaultdict(deque)

    def _trim(self, key: str, now: float) -> deque[float]:
        hits = self._hits[key]
        while hits and hits[0] <= now - self.seconds:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return deque()
        return hits

    def check(self, key: str, now: float | None = None) -> None:
        """Raise 429 if ``key`` already used up its window."""
        now = time.monotonic() if now is None else now
        hits = self._trim(key, now)
        if len(hits) >= self.limit:
            retry_after = int(hits[0] + self.seconds - now) + 1
            raise RateLimited("尝试次数过多, 请稍后再试", retry_after_seconds=retry_after)

    def hit(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._trim(key, now)
        self._hits[key].append(now)

    def clear(self, key: str) -> None:
        self._hits.pop(key, None)


class LoginThrottle:
    """Failed logins per account (5 per 15 min) and all logins per client address (30 per 15 min)."""

    def __init__(self, per_account: int = 5, per_address: int = 30, seconds: float = 15 * 60) -> None:
        self.accounts = SlidingWindow(per_account, seconds)
        self.addresses = SlidingWindow(per_address, seconds)

    def before(self, username: str, address: str) -> None:
        self.addresses.check(address)
        self.accounts.check(username.lower())
        self.addresses.hit(address)

    def failed(self, username: str) -> None:
        self.accounts.hit(username.lower())

    def succeeded(self, username: str) -> None:
        self.accounts.clear(username.lower())
