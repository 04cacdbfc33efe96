"""Keyset pagination over ``(created_at, id)`` descending: stable under inserts, O(page) at any depth."""

from __future__ import annotations

import base64
import re
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import BigInteger, DateTime, Integer, Select, bindparam, tuple_

from app.errors import InvalidInput
from app.schemas.common import DateTime as RequestDateTime
from app.schemas.common import Id

# A cursor is ``base64url("<created_at ISO 8601>|<id>")``. A client hands it back, so it is input like
# any other: each part is checked as the request types check it (``Id``, ``DateTime``: a bigint and a
# time in the calendar), else a tampered cursor would reach the database as an out-of-range parameter.
_CURSOR = re.compile(r"([0-9A-Za-z:.+\-]{1,40})\|([0-9]{1,19})", re.ASCII)
_CREATED_AT: TypeAdapter[datetime] = TypeAdapter(RequestDateTime)
_ROW_ID: TypeAdapter[int] = TypeAdapter(Id)


def encode_cursor(created_at: datetime, row_id: int) -> str:
    """The cursor of the page after the row (``created_at``, ``row_id``)."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """(created_at, id) of a cursor ``encode_cursor`` made; ``InvalidInput`` (422) for anything else."""
    try:
        text = base64.b64decode(cursor.encode("ascii"), altchars=b"-_", validate=True).decode("ascii")
        parts = _CURSOR.fullmatch(text)
        if parts is None:
            raise ValueError(text)
        return _CREATED_AT.validate_python(parts[1]), _ROW_ID.validate_python(int(parts[2]))
    except ValueError as exc:  # so are binascii.Error, UnicodeError and pydantic's ValidationError
        raise InvalidInput("cursor 无效", cursor=cursor[:200]) from exc


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
