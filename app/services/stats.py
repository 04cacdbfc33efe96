"""统计: the figures centers report for annual reviews and 考核, for one unit's subtree and period.

Attribution: an order counts in the period it was *placed* in (``orders.created_at``), and everything
that happened to it — review, service, hours, ratings, escalations — is attributed to that period, so
rates are ratios of the same orders. 荣誉时长 has no order; it counts when it was entered, for
volunteers whose home unit lies in the subtree.

Speed: every order-linked figure starts from one cohort — the subtree's orders placed in the period,
read from the covering index ``ix_orders_stats_cohort`` without touching the table — and reaches the
other tables through covering ``order_id`` indexes, so a county's year is a few index-only probes per
order (``bench/scale.py`` measures it at a million orders). One statement computes every figure for
every group *and* the overall row (``GROUPING SETS``); a second computes 荣誉时长 through a partial index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Float,
    Integer,
    RowMapping,
    Select,
    String,
    and_,
    cast,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app.auth import Actor
from app.db import transaction
from app.domain import Action, Status
from app.errors import InvalidInput
from app.models import (
    HoursEntry,
    MenuCategory,
    Order,
    OrderEvent,
    OrgUnit,
    Rating,
    ServiceRecord,
    Volunteer,
)
from app.schemas.stats import Durations, Figures, GroupBy, StatsGroup, StatsOut
from app.services import activity_reports
from app.services.directory_units import jurisdiction, unit_in_scope
from app.services.scope import subtree

Rows = Select[*tuple[Any, ...]]
TIMEZONE: Final = "Asia/Shanghai"
LOCAL: Final = ZoneInfo(TIMEZONE)
MAX_PERIOD: Final = timedelta(days=5 * 366)
DEFAULT_PERIOD: Final = timedelta(days=365)

# Orders in these states have passed review (受理); cancelled ones may or may not have.
REVIEWED_STATES: Final = tuple(
    s.value for s in Status if s not in (Status.SUBMITTED, Status.REJECTED, Status.CANCELLED)
)
# The order events statistics count; ``ix_order_events_counted`` holds exactly these.
COUNTED_EVENTS: Final = (Action.ESCALATE.value, Action.EXPIRE.value, Action.CANCEL.value)
COMPLETED_STATES: Final = (Status.COMPLETED.value, Status.RATED.value, Status.CLOSED.value)
CREDIT_KINDS: Final = ("service", "adjustment")
SATISFIED_STARS: Final = 4
NO_CATEGORY: Final = "none"

# --- the period -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)`` in UTC."""

    start: datetime
    end: datetime


_SPACED_OFFSET = re.compile(r" (\d{2}(:?\d{2})?)$")


def _parse_bound(raw: str, name: str, *, is_end: bool) -> datetime:
    """A date (Asia/Shanghai; ``to`` includes that whole day) or a timestamp with a time zone."""
    value = raw.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            if is_end:
                day += timedelta(days=1)
            return datetime.combine(day, time.min, LOCAL).astimezone(UTC)
        # An unencoded "+08:00" in a query string arrives as " 08:00".
        instant = datetime.fromisoformat(_SPACED_OFFSET.sub(r"+\1", value))
    except ValueError as exc:
        raise InvalidInput(
            f"{name} 须为日期 (2025-01-31) 或带时区的时间 (2025-01-31T08:00:00+08:00)", field=name
        ) from exc
    if instant.tzinfo is None:
        raise InvalidInput(f"{name} 须带时区, 例如 2025-01-31T08:00:00+08:00", field=name)
    return instant.astimezone(UTC)


def resolve_period(raw_from: str | None, raw_to: str | None, *, now: datetime | None = None) -> Period:
    """The period a request asks for: ``to`` defaults to now, ``from`` to a year before ``to``;
    ``to`` must be after ``from`` and the period at most five years (422 otherwise)."""
    end = _parse_bound(raw_to, "to", is_end=True) if raw_to else (now or datetime.now(UTC))
    start = _parse_bound(raw_from, "from", is_end=False) if raw_from else end - DEFAULT_PERIOD
    if end <= start:
        raise InvalidInput("to 须晚于 from", field="to")
    if end - start > MAX_PERIOD:
        raise InvalidInput("统计区间最长 5 年", field="from")
    return Period(start, end)


# --- grouping -------------------------------------------------------------------------------------


def local_month(column: Any) -> ColumnElement[str]:
    """``YYYY-MM`` of a timestamp, in Asia/Shanghai."""
    return func.to_char(func.timezone(TIMEZONE, column), "YYYY-MM")


def child_key(path_column: Any, parent_path: str) -> ColumnElement[str]:
    """The id of the direct child of ``parent_path`` whose subtree holds ``path_column``; ``''`` for the
    parent itself. ``"1.5.12.40."`` under ``"1.5."`` → ``"12"``."""
    return func.split_part(func.substr(path_column, len(parent_path) + 1), ".", 1)


def _order_key(group_by: GroupBy | None, unit_path: str) -> ColumnElement[str]:
    if group_by is GroupBy.UNIT:
        return child_key(Order.unit_path, unit_path)
    if group_by is GroupBy.CATEGORY:
        return func.coalesce(cast(Order.category_id, String), NO_CATEGORY)
    if group_by is GroupBy.MONTH:
        return local_month(Order.created_at)
    return literal("", String)


def _grouped(query: Rows, key: Any, grouped: bool) -> Rows:
    """Per group and overall (``GROUPING SETS ((key), ())``) with ``total`` = 1 on the overall row;
    ungrouped, the one overall row (which exists even when nothing matched)."""
    if grouped:
        return query.add_columns(key.label("g"), func.grouping(key).label("total")).group_by(
            func.grouping_sets(key, text("()"))
        )
    return query.add_columns(literal("", String).label("g"), literal(1, Integer).label("total"))


# --- the queries ----------------------------------------------------------------------------------


def _order_figures(order_scope: ColumnElement[bool], key: ColumnElement[str], grouped: bool) -> Rows:
    """Every order-linked figure, per group and overall, in one statement. Each join reaches its table
    through a covering index, so at a county's scale this is a few index-only probes per order."""
    cohort = (
        select(
            Order.id,
            Order.status,
            key.label("g"),
            cast(func.extract("epoch", Order.accepted_at - Order.created_at), Float).label("to_accept"),
            cast(func.extract("epoch", Order.completed_at - Order.created_at), Float).label("to_complete"),
        )
        .where(order_scope)
        .cte("cohort")
    )
    c = cohort.c

    def by_group(query: Rows) -> Any:
        return _grouped(query, c.g, grouped).subquery()

    quantiles = literal([0.5, 0.9], ARRAY(Float))
    orders = by_group(
        select(
            func.count().label("placed"),
            *(func.count().filter(c.status == s.value).label(f"status_{s.value}") for s in Status),
            func.count().filter(c.status.in_(REVIEWED_STATES)).label("reviewed"),
            func.count(c.to_accept).label("accepted_n"),
            func.percentile_cont(quantiles).within_group(c.to_accept).label("to_accept_q"),
            func.count(c.to_complete).label("completed_n"),
            func.percentile_cont(quantiles).within_group(c.to_complete).label("to_complete_q"),
        )
    )
    # A cancelled order passed review unless it was cancelled while still awaiting it.
    events = by_group(
        select(
            func.count().filter(OrderEvent.action == Action.ESCALATE.value).label("escalations"),
            func.count().filter(OrderEvent.action == Action.EXPIRE.value).label("expiries"),
            func.count()
            .filter(OrderEvent.action == Action.CANCEL.value, OrderEvent.from_status != Status.SUBMITTED.value)
            .label("cancelled_after_review"),
        )
        .select_from(cohort)
        .join(OrderEvent, and_(OrderEvent.order_id == c.id, OrderEvent.action.in_(COUNTED_EVENTS)))
    )
    records = by_group(
        select(
            func.count().label("service_events"),
            func.coalesce(func.sum(ServiceRecord.served_count), 0).label("people_served"),
        )
        .select_from(cohort)
        .join(ServiceRecord, ServiceRecord.order_id == c.id)
    )
    # The ledger credits every participant of a service record a ``service`` entry in the completing
    # transaction, so its volunteers are the participants — read from the same index as the hours.
    hours = by_group(
        select(
            func.coalesce(func.sum(HoursEntry.hours), 0).label("credit_hours"),
            func.coalesce(func.sum(HoursEntry.hours).filter(HoursEntry.verified.is_(False)), 0).label(
                "credit_hours_unverified"
            ),
            func.count(HoursEntry.volunteer_id.distinct())
            .filter(HoursEntry.kind == "service")
            .label("active_volunteers"),
        )
        .select_from(cohort)
        .join(HoursEntry, and_(HoursEntry.order_id == c.id, HoursEntry.kind.in_(CREDIT_KINDS)))
    )
    ratings = by_group(
        select(
            func.count().label("ratings"),
            func.avg(Rating.stars).label("rating_average"),
            func.count().filter(Rating.stars >= SATISFIED_STARS).label("satisfied"),
            func.count().filter(Rating.by_proxy).label("proxy_ratings"),
        )
        .select_from(cohort)
        .join(Rating, Rating.order_id == c.id)
    )

    def same_group(other: Any) -> ColumnElement[bool]:
        return and_(other.c.g.is_not_distinct_from(orders.c.g), other.c.total == orders.c.total)

    joined = orders
    for other in (events, records, hours, ratings):
        joined = joined.outerjoin(other, same_group(other))
    return select(
        orders,
        *(events.c[n] for n in ("escalations", "expiries", "cancelled_after_review")),
        *(records.c[n] for n in ("service_events", "people_served")),
        *(hours.c[n] for n in ("credit_hours", "credit_hours_unverified", "active_volunteers")),
        *(ratings.c[n] for n in ("ratings", "rating_average", "satisfied", "proxy_ratings")),
    ).select_from(joined)


def _honor_figures(unit_path: str, period: Period, group_by: GroupBy | None) -> Rows:
    """荣誉时长 entered in the period for volunteers homed in the subtree."""
    key: ColumnElement[str] | None = None
    if group_by is GroupBy.UNIT:
        key = child_key(OrgUnit.path, unit_path)
    elif group_by is GroupBy.MONTH:
        key = local_month(HoursEntry.created_at)
    query = (
        select(func.coalesce(func.sum(HoursEntry.hours), 0).label("honor_hours"))
        .select_from(HoursEntry)
        .join(Volunteer, Volunteer.id == HoursEntry.volunteer_id)
        .join(OrgUnit, OrgUnit.id == Volunteer.home_unit_id)
        .where(
            HoursEntry.kind == "honor",
            HoursEntry.created_at >= period.start,
            HoursEntry.created_at < period.end,
            subtree(OrgUnit.path, unit_path),
        )
    )
    return _grouped(query, key, key is not None)


# --- shaping --------------------------------------------------------------------------------------


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _durations(count: int, quantiles: list[float] | None) -> Durations:
    median, p90 = quantiles if quantiles else (None, None)
    return Durations(
        count=count,
        median_seconds=round(median, 1) if median is not None else None,
        p90_seconds=round(p90, 1) if p90 is not None else None,
    )


def _figures(row: RowMapping | None, honor: float | None) -> dict[str, Any]:
    m: dict[str, Any] = dict(row) if row is not None else {}

    def n(name: str) -> int:
        return int(m.get(name) or 0)

    by_status = {s: n(f"status_{s.value}") for s in Status}
    completed = sum(by_status[Status(s)] for s in COMPLETED_STATES)
    approved = n("reviewed") + n("cancelled_after_review")
    average = m.get("rating_average")
    return {
        "placed": n("placed"),
        "orders_by_status": by_status,
        "approved": approved,
        "rejected": by_status[Status.REJECTED],
        "cancelled": by_status[Status.CANCELLED],
        "completed": completed,
        "completion_rate": _ratio(completed, approved),
        "time_to_accept": _durations(n("accepted_n"), m.get("to_accept_q")),
        "time_to_complete": _durations(n("completed_n"), m.get("to_complete_q")),
        "service_events": n("service_events"),
        "people_served": n("people_served"),
        "credit_hours": float(m.get("credit_hours") or 0),
        "credit_hours_unverified": float(m.get("credit_hours_unverified") or 0),
        "honor_hours": honor,
        "active_volunteers": n("active_volunteers"),
        "ratings": n("ratings"),
        "proxy_ratings": n("proxy_ratings"),
        "rating_average": round(float(average), 2) if average is not None else None,
        "satisfaction_rate": _ratio(n("satisfied"), n("ratings")),
        "escalations": n("escalations"),
        "expiries": n("expiries"),
    }


@dataclass(frozen=True, slots=True)
class _Slot:
    key: str
    label: str
    unit_id: int | None = None
    category_id: int | None = None
    month: str | None = None


async def _slots(
    session: AsyncSession, unit: OrgUnit, group_by: GroupBy, period: Period, keys: set[str]
) -> list[_Slot]:
    """Every group the report shows, with zeros where nothing happened: the unit itself (本级) and each
    direct child; every menu category; every month of the period."""
    if group_by is GroupBy.UNIT:
        children = (
            await session.execute(
                select(OrgUnit.id, OrgUnit.name).where(OrgUnit.parent_id == unit.id).order_by(OrgUnit.id)
            )
        ).all()
        own = _Slot("", f"{unit.name} (本级)", unit_id=unit.id)
        return [own, *(_Slot(str(i), name, unit_id=i) for i, name in children)]
    if group_by is GroupBy.CATEGORY:
        categories = (
            await session.execute(
                select(MenuCategory.id, MenuCategory.name).order_by(MenuCategory.sort_order, MenuCategory.id)
            )
        ).all()
        slots = [_Slot(str(i), name, category_id=i) for i, name in categories]
        if NO_CATEGORY in keys:
            slots.append(_Slot(NO_CATEGORY, "自定义需求"))
        return slots
    months: list[_Slot] = []
    first = period.start.astimezone(LOCAL)
    last = (period.end - timedelta(microseconds=1)).astimezone(LOCAL)
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        label = f"{year:04d}-{month:02d}"
        months.append(_Slot(label, label, month=label))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


async def center_stats(
    session: AsyncSession,
    actor: Actor,
    *,
    unit_id: int | None,
    period: Period,
    group_by: GroupBy | None,
) -> StatsOut:
    """统计 of ``unit_id`` (default: the caller's unit) and its subtree over ``period``, overall and per
    ``group_by``. A unit outside the caller's subtree is 404."""
    jurisdiction(actor)
    async with transaction(session):
        # JIT compilation would cost more than these index-driven queries take; and the best plan
        # depends on the values (a 站 or a province, a month or five years), so never reuse a generic
        # plan of the prepared statement.
        await session.execute(text("SET LOCAL jit = off"))
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        unit = await unit_in_scope(session, actor, unit_id if unit_id is not None else actor.unit_id or 0)
        grouped = group_by is not None
        order_scope = and_(
            subtree(Order.unit_path, unit.path),
            Order.created_at >= period.start,
            Order.created_at < period.end,
        )
        rows = (
            (await session.execute(_order_figures(order_scope, _order_key(group_by, unit.path), grouped)))
            .mappings()
            .all()
        )
        honor_rows = (await session.execute(_honor_figures(unit.path, period, group_by))).all()
        slots = await _slots(session, unit, group_by, period, {r["g"] for r in rows}) if group_by else []
        activities = await activity_reports.activity_figures(session, unit.path, period.start, period.end)

    overall_row = next((r for r in rows if r["total"] == 1), None)
    honor_overall = next((float(r.honor_hours) for r in honor_rows if r.total == 1), 0.0)
    by_key = {r["g"]: r for r in rows if r["total"] == 0}
    honor_by_key = {r.g: float(r.honor_hours) for r in honor_rows if r.total == 0}
    groups = [
        StatsGroup(
            key=slot.key or str(unit.id),
            label=slot.label,
            unit_id=slot.unit_id,
            category_id=slot.category_id,
            month=slot.month,
            **_figures(
                by_key.get(slot.key),
                None if group_by is GroupBy.CATEGORY else honor_by_key.get(slot.key, 0.0),
            ),
        )
        for slot in slots
    ]
    return StatsOut(
        unit_id=unit.id,
        unit_name=unit.name,
        period_from=period.start,
        period_to=period.end,
        group_by=group_by,
        overall=Figures(**_figures(overall_row, honor_overall)),
        activities=activities,
        groups=groups,
    )
