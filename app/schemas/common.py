from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Generic, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)
from pydantic import Tag as Variant

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


# The calendar requests may name: far wider than any schedule, period or cursor needs, and narrow
# enough that converting to UTC (or adding a day) never leaves Python's range. Without it,
# ``0001-01-01T00:00:00+05:00`` or ``9999-12-31T23:59:59-14:00`` passed validation and overflowed
# on their way to the database (500).
EARLIEST: Final = datetime(1900, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2200, 1, 1, tzinfo=UTC)  # exclusive
_OUT_OF_CALENDAR = "须在 1900-01-01 与 2200-01-01 (UTC) 之间"


def _in_calendar(value: datetime) -> datetime:
    try:
        instant = value.astimezone(UTC)
    except OverflowError as exc:  # year 1 with a positive offset, year 9999 with a negative one
        raise ValueError(_OUT_OF_CALENDAR) from exc
    if not EARLIEST <= instant < LATEST:
        raise ValueError(_OUT_OF_CALENDAR)
    return value


# In requests: ISO 8601 with a time zone (a naive time would be read as UTC), never a bare number,
# within the calendar above. Every datetime a request carries, in a body or a query, is this type.
DateTime = Annotated[AwareDatetime, BeforeValidator(_not_a_number), AfterValidator(_in_calendar)]

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def _iso_date(value: Any) -> Any:
    # Pydantic would also read a Unix timestamp, or a midnight in any zone, as a date.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
        return value.strip()
    raise ValueError("须为日期, 如 2025-01-31")


def _day_in_calendar(value: date) -> date:
    if not EARLIEST.date() <= value < LATEST.date():
        raise ValueError(_OUT_OF_CALENDAR)
    return value


# A calendar day (its zone is the endpoint's to say), within the calendar above.
Day = Annotated[date, BeforeValidator(_iso_date), AfterValidator(_day_in_calendar)]

_SPACED_OFFSET = re.compile(r" (\d{2}(:?\d{2})?)$")


def _plus_restored(value: Any) -> Any:
    # An unencoded "+08:00" in a query string arrives as " 08:00".
    return _SPACED_OFFSET.sub(r"+\1", value.strip()) if isinstance(value, str) else value


def _day_or_instant(value: Any) -> str:
    # By its form, so a bad value gets the one message that fits it.
    if isinstance(value, str):
        return "day" if _ISO_DATE.fullmatch(value.strip()) else "instant"
    return "day" if isinstance(value, date) and not isinstance(value, datetime) else "instant"


# A bound of a reporting period in a query: a ``Day`` (2025-01-31) or a ``DateTime``.
PeriodBound = Annotated[
    Annotated[Day, Variant("day")] | Annotated[DateTime, BeforeValidator(_plus_restored), Variant("instant")],
    Discriminator(_day_or_instant),
]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]


# Hours (服务时长) are a JSON number everywhere, in requests and in responses (``2.5``): kept as ``Decimal``
# inside, so sums are exact, and written as numbers (one decimal place, well within a double's precision).
Hours = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


def hours_schema(**bounds: float) -> WithJsonSchema:
    """The request schema of a bounded ``Decimal`` hours field: a number (Pydantic also writes a string form)."""
    return WithJsonSchema({"type": "number", **bounds, "description": "hours, one decimal place"}, mode="validation")


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
