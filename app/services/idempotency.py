"""Idempotency-Key: the first successful response to a (user, key) is stored in the same transaction
as its effect and replayed on every retry; a concurrent retry waits on the row lock, then replays."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInput
from app.models import IdempotencyRecord

MAX_KEY_LENGTH = 128


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    key: str
    fingerprint: str

    @classmethod
    def from_request(cls, key: str | None, method: str, path: str, body: Any) -> IdempotencyKey | None:
        if key is None:
            return None
        key = key.strip()
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise InvalidInput(f"Idempotency-Key 须为 1–{MAX_KEY_LENGTH} 个可打印字符")
        digest = hashlib.sha256(
            orjson.dumps([method, path, body], option=orjson.OPT_SORT_KEYS, default=str)
        ).hexdigest()
        return cls(key, digest)


async def claim(session: AsyncSession, user_id: int, idem: IdempotencyKey) -> dict[str, Any] | None:
    """Reserve the key inside the caller's transaction; return the stored response if it was used."""
    inserted = await session.execute(
        insert(IdempotencyRecord)
        .values(user_id=user_id, key=idem.key, fingerprint=idem.fingerprint, status_code=0, response={})
        .on_conflict_do_nothing()
        .returning(IdempotencyRecord.user_id)
    )
    if inserted.scalar_one_or_none() is not None:
        return None
    record = (
        await session.execute(
            select(IdempotencyRecord).where(IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == idem.key)
        )
    ).scalar_one()
    if record.fingerprint != idem.fingerprint:
        raise InvalidInput("Idempotency-Key 已用于另一个请求", key=idem.key)
    return record.response


async def store(
    session: AsyncSession, user_id: int, idem: IdempotencyKey, status_code: int, response: dict[str, Any]
) -> None:
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == idem.key)
        .values(status_code=status_code, response=response)
    )
