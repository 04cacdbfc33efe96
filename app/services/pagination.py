"""Keyset pagination over ``(created_at, id)`` descending: stable under inserts, O(page) at any depth."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, Select, bindparam, tuple_

from app.errors import InvalidInput


def encode_cursor(created_at: datetime, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        created, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created), int(row_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor 无效", cursor=cursor) from exc


def keyset(query: Select[Any], created_col: Any, id_col: Any, cursor: str | None, limit: int) -> Select[Any]:
    """Newest first, after ``cursor``; fetch ``limit + 1`` rows to know whether a next page exists."""
    if cursor:
        created, row_id = decode_cursor(cursor)
        query = query.where(tuple_(created_col, id_col) < tuple_(created, row_id))
    return query.order_by(created_col.desc(), id_col.desc()).limit(limit + 1)


def newest_first(query: Select[Any], created_col: Any, id_col: Any, *, after_cursor: bool) -> Select[Any]:
    """``keyset`` for a statement built once: the cursor and the page size are parameters
    (``page_params``), so SQLAlchemy reuses the statement's compiled form and cache key."""
    if after_cursor:
        query = query.where(
            tuple_(created_col, id_col)
            < tuple_(
                bindparam("cursor_created_at", type_=DateTime(timezone=True)),
                bindparam("cursor_id", type_=BigInteger),
            )
        )
    return query.order_by(created_col.desc(), id_col.desc()).limit(bindparam("page_rows", type_=Integer))


def page_params(cursor: str | None, limit: int) -> dict[str, Any]:
    """The parameters of a ``newest_first(…, after_cursor=bool(cursor))`` statement."""
    params: dict[str, Any] = {"page_rows": limit + 1}
    if cursor:
        params["cursor_created_at"], params["cursor_id"] = decode_cursor(cursor)
    return params


def page_of(rows: list[Any], limit: int) -> tuple[list[Any], str | None]:
    """Split a ``limit + 1`` fetch into the page and the cursor of the next one."""
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.created_at, last.id)
