from __future__ import annotations

import re
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

MAX_BIGINT = 2**63 - 1

Id = Annotated[int, Field(ge=1, le=MAX_BIGINT)]


def _no_control_chars(value: str) -> str:
    # PostgreSQL text cannot hold NUL; other C0 controls (except tab/newline) are never meaningful here.
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
        raise ValueError("不允许包含控制字符")
    return value


_Clean = AfterValidator(_no_control_chars)


def _text(max_length: int, min_length: int = 0) -> StringConstraints:
    return StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)


Name = Annotated[str, _text(64, 1), _Clean]  # a person's or account's name
Title = Annotated[str, _text(200, 1), _Clean]
Address = Annotated[str, _text(300, 1), _Clean]
LongText = Annotated[str, _text(2000), _Clean]
Reason = Annotated[str, _text(500, 1), _Clean]
Tag = Annotated[str, _text(32, 1), _Clean]
Code = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
Url = Annotated[str, StringConstraints(max_length=500, pattern=r"^https?://[^\s]+$")]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$")]
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _not_a_number(value: Any) -> Any:
    # Pydantic reads a bare number as a Unix timestamp: ``created_to=-600`` would be 1969.
    if (isinstance(value, int | float) and not isinstance(value, bool)) or (
        isinstance(value, str) and _NUMBER.fullmatch(value)
    ):
        raise ValueError("须为 ISO 8601 日期时间, 如 2025-01-01T08:00:00+08:00")
    return value


# In requests: ISO 8601 with a time zone (a naive time would be read as UTC), never a bare number.
DateTime = Annotated[AwareDatetime, BeforeValidator(_not_a_number)]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A page of results; pass ``next_cursor`` back as ``cursor`` for the next page (keyset)."""

    items: list[T]
    next_cursor: str | None = None


def mask_phone(phone: str) -> str:
    """``13812345678`` → ``138****5678``; short numbers keep only their last two digits."""
    if len(phone) >= 7:
        return f"{phone[:3]}****{phone[-4:]}"
    return "*" * max(len(phone) - 2, 0) + phone[-2:]
