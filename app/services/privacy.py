"""个人信息保护: who saw a resident's or a volunteer's unmasked phone, and key rotation for data at rest."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Column, String, cast, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import crypto
from app.auth import Actor
from app.db import transaction
from app.domain import Role
from app.models import Base, Order, OrderView, PiiAccess, Volunteer
from app.models.base import table_of
from app.services.guards import is_orderer, may_see_phone


def logs_phone_read(actor: Actor, order: OrderView) -> bool:
    """An admin about to see an order's contact phone unmasked (their own orders excepted) is logged."""
    return actor.role is Role.ADMIN and may_see_phone(actor, order) and not is_orderer(actor, order)


async def record_phone_reads(session: AsyncSession, actor: Actor, orders: Iterable[Order], route: str) -> int:
    """Log each order whose contact phone an admin is about to see unmasked (``logs_phone_read``)."""
    rows = [
        {"user_id": actor.user_id, "order_id": order.id, "field": "contact_phone", "route": route[:64]}
        for order in orders
        if logs_phone_read(actor, order)
    ]
    if rows:
        await session.execute(insert(table_of(PiiAccess)), rows)
    return len(rows)


async def record_volunteer_phone_reads(
    session: AsyncSession, actor: Actor, volunteers: Iterable[Volunteer], route: str
) -> int:
    """Log each volunteer whose phone an admin is about to see (admins see their volunteers' phones
    unmasked, to reach them)."""
    if actor.role is not Role.ADMIN:
        return 0
    rows = [
        {"user_id": actor.user_id, "volunteer_id": volunteer.id, "field": "phone", "route": route[:64]}
        for volunteer in volunteers
    ]
    if rows:
        await session.execute(insert(table_of(PiiAccess)), rows)
    return len(rows)


def encrypted_columns() -> list[Column[Any]]:
    """Every column stored encrypted (``crypto.EncryptedString``), in every table: what ``rotate_keys``
    rewrites, found from the models so a new one is never forgotten."""
    return [
        column
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, crypto.EncryptedString)
    ]


async def rotate_keys(session: AsyncSession, batch: int = 1000) -> int:
    """Re-encrypt every stored phone (every ``encrypted_columns()``) under the first key of
    ``SIDAN_DATA_KEYS``, and recompute the phone lookup hashes (``phone_hash`` beside ``phone``) under
    the current lookup key; returns rows rewritten.

    Reads the raw column (bypassing the decrypting type), so rows written before encryption are
    encrypted too. Safe to re-run."""
    rewritten = 0
    for raw in encrypted_columns():
        table = raw.table
        column_name = raw.name
        hashed = "phone_hash" if column_name == "phone" and "phone_hash" in table.c else ""
        last_id = 0
        while True:
            async with transaction(session):
                rows = (
                    await session.execute(
                        select(table.c.id, cast(raw, String))
                        .where(table.c.id > last_id, raw.is_not(None))
                        .order_by(table.c.id)
                        .limit(batch)
                    )
                ).all()
                for row_id, value in rows:
                    phone = crypto.decrypt(value)
                    values: dict[str, object] = {column_name: phone}
                    if hashed:
                        values[hashed] = crypto.lookup_hash(phone)
                    await session.execute(update(table).where(table.c.id == row_id).values(values))
            if not rows:
                break
            rewritten += len(rows)
            last_id = rows[-1][0]
    return rewritten
