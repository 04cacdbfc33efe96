"""Schedules of standing orders (常态化服务): RFC 5545 recurrence rules read with python-dateutil.

A schedule is one ``RRULE`` (without ``DTSTART``: that is the standing order's ``starts_at``) applied in
local time, Asia/Shanghai (no daylight saving: wall clock and offset never jump). Accepted rules are
bounded so a client cannot make the sweeper place orders without end or by the minute:

- ``FREQ`` is ``DAILY``, ``WEEKLY``, ``MONTHLY`` or ``YEARLY``, and occurrences are at least
  ``MIN_GAP`` apart (a ``BYHOUR`` list cannot sneak in several a day);
- ``COUNT`` (at most ``MAX_OCCURRENCES``) or ``UNTIL`` (within ``MAX_SPAN`` of the start) is required;
- only the parts a service schedule needs (``_ALLOWED_PARTS``: no ``BYMONTH``, ``BYYEARDAY``,
  ``BYWEEKNO``, ``BYSETPOS``): with them a rule can ask for a day that never comes (30 February),
  which dateutil searches for until the year 9999, seconds of CPU per request;
- the rule yields at least one occurrence.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import DAILY, MONTHLY, WEEKLY, YEARLY, rrule, rrulestr

from app.errors import InvalidInput

LOCAL = ZoneInfo("Asia/Shanghai")
MAX_OCCURRENCES = 400
MAX_SPAN = timedelta(days=3 * 366)
MIN_GAP = timedelta(hours=20)
_ALLOWED_FREQ = {DAILY, WEEKLY, MONTHLY, YEARLY}
_ALLOWED_PARTS = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYHOUR", "BYMINUTE", "WKST"}
MAX_INTERVAL = 52


def _local_naive(moment: datetime) -> datetime:
    return moment.astimezone(LOCAL).replace(tzinfo=None)


def _aware(local: datetime) -> datetime:
    return local.replace(tzinfo=LOCAL).astimezone(UTC)


def _parse(text: str, starts_at: datetime) -> rrule:
    if "\n" in text or "\r" in text or "DTSTART" in text.upper():
        raise InvalidInput("rrule 只能是一条 RRULE (不含 DTSTART、EXDATE 等), 开始时间用 starts_at", field="rrule")
    if not text:
        raise InvalidInput("rrule 不能为空, 例如 FREQ=WEEKLY;BYDAY=TU;COUNT=52", field="rrule")
    parts = dict(part.partition("=")[::2] for part in text.upper().removeprefix("RRULE:").split(";"))
    if unknown := sorted(set(parts) - _ALLOWED_PARTS):
        raise InvalidInput(
            f"rrule 不支持 {', '.join(unknown)}; 可用: {', '.join(sorted(_ALLOWED_PARTS))}", field="rrule"
        )
    interval = parts.get("INTERVAL", "1")
    if not interval.isdigit() or not 1 <= int(interval) <= MAX_INTERVAL:
        raise InvalidInput(f"INTERVAL 须为 1–{MAX_INTERVAL}", field="rrule")
    for name, low, high in (("BYMONTHDAY", -31, 31), ("BYHOUR", 0, 23), ("BYMINUTE", 0, 59)):
        for value in parts[name].split(",") if name in parts else ():
            number = value.strip().removeprefix("-")
            if not number.isdigit() or not low <= int(value) <= high or (name == "BYMONTHDAY" and int(value) == 0):
                raise InvalidInput(f"{name} 取值不正确: {value}", field="rrule")
    try:
        rule = rrulestr(text.removeprefix("RRULE:"), dtstart=_local_naive(starts_at))
    except (ValueError, TypeError, KeyError, OverflowError, IndexError) as exc:
        message = str(exc)
        if "UNTIL" in message:
            message = "UNTIL 须为本地时间 (Asia/Shanghai), 例如 UNTIL=20271231T235959, 不带 Z"
        raise InvalidInput(f"rrule 无法解析: {message}", field="rrule") from exc
    if not isinstance(rule, rrule):
        raise InvalidInput("rrule 只能是一条 RRULE", field="rrule")
    return rule


def validate(text: str, starts_at: datetime) -> list[datetime]:
    """The schedule's occurrences (aware, UTC), or 422 (``InvalidInput``) when the rule is malformed,
    unbounded, more often than daily, or empty."""
    text = text.strip()
    rule = _parse(text, starts_at)
    upper = text.upper()
    if _freq_of(upper) not in _ALLOWED_FREQ:
        raise InvalidInput("重复频率最高为每天一次 (FREQ=DAILY/WEEKLY/MONTHLY/YEARLY)", field="rrule")
    if "COUNT=" not in upper and "UNTIL=" not in upper:
        raise InvalidInput("rrule 须以 COUNT 或 UNTIL 限定结束", field="rrule")
    try:
        local = list(itertools.islice(rule, MAX_OCCURRENCES + 1))
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(f"rrule 无法展开: {exc}", field="rrule") from exc
    if not local:
        raise InvalidInput("rrule 在开始时间之后没有任何一次服务", field="rrule")
    if len(local) > MAX_OCCURRENCES:
        raise InvalidInput(f"一个常态化服务最多 {MAX_OCCURRENCES} 次", field="rrule", max=MAX_OCCURRENCES)
    if local[-1] - local[0] > MAX_SPAN:
        raise InvalidInput("常态化服务最长 3 年", field="rrule")
    for earlier, later in itertools.pairwise(local):
        if later - earlier < MIN_GAP:
            raise InvalidInput("两次服务至少间隔一天", field="rrule", at=later.isoformat())
    return [_aware(moment) for moment in local]


_FREQ_NAMES = {"YEARLY": YEARLY, "MONTHLY": MONTHLY, "WEEKLY": WEEKLY, "DAILY": DAILY}


def _freq_of(upper: str) -> int | None:
    for part in upper.removeprefix("RRULE:").split(";"):
        name, _, value = part.partition("=")
        if name.strip() == "FREQ":
            return _FREQ_NAMES.get(value.strip(), -1)
    return None


def next_after(text: str, starts_at: datetime, after: datetime | None) -> datetime | None:
    """The first occurrence strictly after ``after`` (the first of all when ``None``), or ``None``."""
    rule = _parse(text, starts_at)
    if after is None:
        first = next(iter(rule), None)
        return None if first is None else _aware(first)
    found = rule.after(_local_naive(after), inc=False)
    return None if found is None else _aware(found)
