"""导出: CSV and XLSX files of the caller's subtree — orders, service records, volunteer hours, activities.
Hours of spans whose presence nobody proved are marked 未核验 (a column in each file).

The files leave the system, so contact and volunteer phones are always masked, and any text cell
a spreadsheet would read as a formula (``= + - @``, tab, CR) is prefixed with ``'``. CSV: UTF-8 with a
BOM so Excel shows the Chinese headers. XLSX: the same rows (the same cells, so the same prefix), each
text cell written as a string, through openpyxl's write-only mode into a temporary file.

Nothing is built in memory: orders and service records are read in keyset chunks of the orders'
``(created_at, id)`` — keys from a covering index, then the rows of those orders, each chunk its own
short transaction so a slow download holds no connection — and per-volunteer totals, which are one
aggregate, come through a server-side cursor. Periods and
attribution are those of ``app.services.stats``: orders placed in the period and what happened to them;
荣誉时长 entered in the period for volunteers homed in the subtree.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final
from urllib.parse import quote

from sqlalchemy import BigInteger, ColumnElement, Select, and_, any_, func, literal, or_, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from app.auth import Actor
from app.db import transaction
from app.domain import STATUS_LABELS, Channel, Status
from app.models import (
    Activity,
    ActivitySignup,
    ActivitySlot,
    HoursEntry,
    MenuCategory,
    Order,
    OrgUnit,
    Rating,
    ServiceParticipant,
    ServiceRecord,
    Volunteer,
)
from app.schemas.common import mask_phone
from app.services import activity_reports
from app.services.directory_units import jurisdiction, unit_in_scope
from app.services.presence import PROOF_LABELS
from app.services.scope import subtree
from app.services.stats import CREDIT_KINDS, LOCAL, TIMEZONE, Period

Rows = Select[*tuple[Any, ...]]
BOM: Final = "\ufeff"
CHUNK_ROWS: Final = 2000
FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")
CHANNEL_LABELS: Final[dict[str, str]] = {
    Channel.MINIPROGRAM.value: "微信小程序",
    Channel.KIOSK.value: "点单机",
    Channel.HOTLINE.value: "热线",
    Channel.OFFLINE.value: "线下",
    Channel.APP.value: "App/后台",
}


class ExportKind(StrEnum):
    ORDERS = "orders"
    SERVICE_RECORDS = "service-records"
    VOLUNTEER_HOURS = "volunteer-hours"
    ACTIVITIES = "activities"


FILE_TITLES: Final = {
    ExportKind.ORDERS: "订单",
    ExportKind.SERVICE_RECORDS: "服务记录",
    ExportKind.VOLUNTEER_HOURS: "志愿时长",
    ExportKind.ACTIVITIES: "活动",
}


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """What to export, checked against the caller's scope before the response starts."""

    kind: ExportKind
    unit_id: int
    unit_path: str
    unit_name: str
    period: Period


async def plan_export(
    session: AsyncSession, actor: Actor, kind: ExportKind, *, unit_id: int | None, period: Period
) -> ExportPlan:
    """Resolve the unit (default: the caller's; 404 outside the subtree) of an export."""
    jurisdiction(actor)
    async with transaction(session):
        unit = await unit_in_scope(session, actor, unit_id if unit_id is not None else actor.unit_id or 0)
    return ExportPlan(kind, unit.id, unit.path, unit.name, period)


def content_disposition(plan: ExportPlan, extension: str = "csv") -> str:
    start = plan.period.start.astimezone(LOCAL).strftime("%Y%m%d")
    end = plan.period.end.astimezone(LOCAL).strftime("%Y%m%d")
    ascii_name = f"{plan.kind.value}-{plan.unit_id}-{start}-{end}.{extension}"
    utf8_name = f"{FILE_TITLES[plan.kind]}-{plan.unit_name}-{start}-{end}.{extension}"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(utf8_name)}"


# --- cells ----------------------------------------------------------------------------------------


def safe_text(value: str | None) -> str:
    """A text cell a spreadsheet will not evaluate (CSV formula injection)."""
    if not value:
        return ""
    return f"'{value}" if value.startswith(FORMULA_PREFIXES) else value


def local_time(column: Any) -> ColumnElement[str]:
    """``YYYY-MM-DD HH:MM:SS`` in Asia/Shanghai, formatted by the database (NULL stays NULL)."""
    return func.to_char(func.timezone(TIMEZONE, column), "YYYY-MM-DD HH24:MI:SS")


def hours_cell(value: Decimal | int | None) -> str:
    return f"{Decimal(value or 0):.1f}"


def _csv_chunk(rows: Iterable[Sequence[str | int]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


# --- orders ---------------------------------------------------------------------------------------

ORDER_HEADER: Final = (
    "订单编号",
    "状态",
    "服务项目",
    "服务类别",
    "所属单位",
    "联系人",
    "联系电话",
    "服务地址",
    "服务对象人数",
    "点单渠道",
    "代点单",
    "下单时间",
    "接单时间",
    "完成时间",
    "服务轮次",
    "评价星级",
    "代评",
    "签到核验",
)


def _order_scope(plan: ExportPlan) -> ColumnElement[bool]:
    return and_(
        subtree(Order.unit_path, plan.unit_path),
        Order.created_at >= plan.period.start,
        Order.created_at < plan.period.end,
    )


def _cohort_keys(plan: ExportPlan, after: tuple[datetime, int] | None) -> Rows:
    """The next chunk of the subtree's orders placed in the period, oldest first: keys only, read
    from the covering index ``ix_orders_stats_cohort`` — cheap whatever the chunk's depth."""
    query = select(Order.created_at, Order.id).where(_order_scope(plan))
    if after is not None:
        query = query.where(tuple_(Order.created_at, Order.id) > tuple_(*after))
    return query.order_by(Order.created_at, Order.id).limit(CHUNK_ROWS)


def _ids(ids: list[int]) -> Any:
    return any_(literal(ids, ARRAY(BigInteger)))


def _order_rows(ids: list[int]) -> Rows:
    unit = aliased(OrgUnit)
    return (
        select(
            Order.code,
            Order.status,
            Order.title,
            MenuCategory.name,
            unit.name,
            Order.contact_name,
            Order.contact_phone,
            Order.address,
            Order.beneficiaries,
            Order.channel,
            or_(Order.resident_id.is_(None), Order.placed_by_id != Order.resident_id),
            local_time(Order.created_at),
            local_time(Order.accepted_at),
            local_time(Order.completed_at),
            Order.round,
            Rating.stars,
            Rating.by_proxy,
            Order.presence_proof,
            Order.checked_in_at.is_not(None),
        )
        .join(unit, unit.id == Order.unit_id)
        .outerjoin(MenuCategory, MenuCategory.id == Order.category_id)
        .outerjoin(Rating, and_(Rating.order_id == Order.id, Rating.round == Order.round))
        .where(Order.id == _ids(ids))
        .order_by(Order.created_at, Order.id)
    )


def _order_cells(row: Any) -> list[str | int]:
    code, status, title, category, unit, name, phone, address, beneficiaries, channel, proxy = row[:11]
    created, accepted, completed, round_, stars, rated_by_proxy, proof, checked_in = row[11:]
    return [
        safe_text(code),
        STATUS_LABELS[Status(status)],
        safe_text(title),
        safe_text(category) if category else "自定义需求",
        safe_text(unit),
        safe_text(name),
        mask_phone(phone),
        safe_text(address),
        beneficiaries,
        CHANNEL_LABELS.get(channel) or safe_text(channel),
        "是" if proxy else "否",
        created,
        accepted or "",
        completed or "",
        round_,
        stars if stars is not None else "",
        "" if rated_by_proxy is None else ("是" if rated_by_proxy else "否"),
        PROOF_LABELS[proof] if checked_in else "",
    ]


# --- service records ------------------------------------------------------------------------------

RECORD_HEADER: Final = (
    "订单编号",
    "服务项目",
    "所属单位",
    "服务轮次",
    "提交时间",
    "服务人次",
    "参与志愿者人数",
    "记录时长合计(小时)",
    "参与志愿者及时长",
    "服务小结",
    "签到核验",
    "未核验",
)


def _record_rows(ids: list[int]) -> Rows:
    unit = aliased(OrgUnit)
    participants = (
        select(
            func.count().label("n"),
            func.coalesce(func.sum(ServiceParticipant.hours), 0).label("hours"),
            func.string_agg(
                Volunteer.real_name + literal("(") + func.to_char(ServiceParticipant.hours, "FM9990.0") + literal("h)"),
                aggregate_order_by(literal("、"), Volunteer.id),
            ).label("names"),
        )
        .join(Volunteer, Volunteer.id == ServiceParticipant.volunteer_id)
        .where(ServiceParticipant.record_id == ServiceRecord.id)
        .lateral("participants")
    )
    return (
        select(
            Order.code,
            Order.title,
            unit.name,
            ServiceRecord.round,
            local_time(ServiceRecord.created_at),
            ServiceRecord.served_count,
            participants.c.n,
            participants.c.hours,
            participants.c.names,
            ServiceRecord.summary,
            ServiceRecord.presence_proof,
        )
        .join(ServiceRecord, ServiceRecord.order_id == Order.id)
        .join(unit, unit.id == Order.unit_id)
        .join(participants, literal(True))
        .where(Order.id == _ids(ids))
        .order_by(Order.created_at, Order.id, ServiceRecord.round)
    )


def _record_cells(row: Any) -> list[str | int]:
    code, title, unit, round_, submitted, served, n, hours, names, summary, proof = row
    return [
        safe_text(code),
        safe_text(title),
        safe_text(unit),
        round_,
        submitted,
        served,
        n,
        hours_cell(hours),
        safe_text(names),
        safe_text(summary),
        PROOF_LABELS[proof],
        "是" if proof is None else "否",
    ]


# --- volunteer hours ------------------------------------------------------------------------------

HOURS_HEADER: Final = (
    "志愿者编号",
    "姓名",
    "手机号",
    "所属单位",
    "服务订单数",
    "服务时长(小时)",
    "时长更正(小时)",
    "活动时长(小时)",
    "信用时长合计(小时)",
    "荣誉时长(小时)",
    "其中未核验(小时)",
)


def _volunteer_hours(plan: ExportPlan) -> Rows:
    """One row per volunteer with hours: 信用时长 on the subtree's orders placed in the period and at the
    subtree's activities with a slot starting in it, and 荣誉时长 entered in the period for volunteers
    homed in the subtree — never added together."""
    credit = (
        select(
            HoursEntry.volunteer_id,
            func.coalesce(func.sum(HoursEntry.hours).filter(HoursEntry.kind == "service"), 0).label("service"),
            func.coalesce(func.sum(HoursEntry.hours).filter(HoursEntry.kind == "adjustment"), 0).label("adjustment"),
            func.coalesce(func.sum(HoursEntry.hours).filter(HoursEntry.verified.is_(False)), 0).label("unverified"),
            func.count(HoursEntry.order_id.distinct()).label("orders"),
        )
        .join(Order, Order.id == HoursEntry.order_id)
        .where(_order_scope(plan), HoursEntry.kind.in_(CREDIT_KINDS))
        .group_by(HoursEntry.volunteer_id)
        .cte("credit")
    )
    activity = (
        select(
            HoursEntry.volunteer_id,
            func.sum(HoursEntry.hours).label("activity"),
            func.coalesce(func.sum(HoursEntry.hours).filter(HoursEntry.verified.is_(False)), 0).label(
                "activity_unverified"
            ),
        )
        .join(ActivitySignup, ActivitySignup.id == HoursEntry.activity_signup_id)
        .join(ActivitySlot, ActivitySlot.id == ActivitySignup.slot_id)
        .join(Activity, Activity.id == ActivitySlot.activity_id)
        .where(activity_reports.slots_in(plan.unit_path, plan.period.start, plan.period.end))
        .group_by(HoursEntry.volunteer_id)
        .cte("activity")
    )
    home = aliased(OrgUnit)
    honor_volunteer = aliased(Volunteer)
    honor = (
        select(HoursEntry.volunteer_id, func.sum(HoursEntry.hours).label("honor"))
        .join(honor_volunteer, honor_volunteer.id == HoursEntry.volunteer_id)
        .join(home, home.id == honor_volunteer.home_unit_id)
        .where(
            HoursEntry.kind == "honor",
            HoursEntry.created_at >= plan.period.start,
            HoursEntry.created_at < plan.period.end,
            subtree(home.path, plan.unit_path),
        )
        .group_by(HoursEntry.volunteer_id)
        .cte("honor")
    )
    served = func.coalesce(credit.c.volunteer_id, activity.c.volunteer_id)
    both = (
        select(
            func.coalesce(served, honor.c.volunteer_id).label("volunteer_id"),
            credit.c.orders,
            credit.c.service,
            credit.c.adjustment,
            credit.c.unverified,
            activity.c.activity,
            activity.c.activity_unverified,
            honor.c.honor,
        )
        .select_from(credit)
        .join(activity, activity.c.volunteer_id == credit.c.volunteer_id, full=True)
        .join(honor, honor.c.volunteer_id == served, full=True)
        .subquery("both")
    )
    unit = aliased(OrgUnit)
    return (
        select(
            Volunteer.id,
            Volunteer.real_name,
            Volunteer.phone,
            unit.name,
            func.coalesce(both.c.orders, 0),
            func.coalesce(both.c.service, 0),
            func.coalesce(both.c.adjustment, 0),
            func.coalesce(both.c.activity, 0),
            func.coalesce(both.c.honor, 0),
            func.coalesce(both.c.unverified, 0) + func.coalesce(both.c.activity_unverified, 0),
        )
        .select_from(both)
        .join(Volunteer, Volunteer.id == both.c.volunteer_id)
        .join(unit, unit.id == Volunteer.home_unit_id)
        .order_by(Volunteer.id)
    )


def _hours_cells(row: Any) -> list[str | int]:
    vid, name, phone, unit, orders, service, adjustment, activity, honor, unverified = row
    return [
        vid,
        safe_text(name),
        mask_phone(phone),
        safe_text(unit),
        orders,
        hours_cell(service),
        hours_cell(adjustment),
        hours_cell(activity),
        hours_cell(Decimal(service) + Decimal(adjustment) + Decimal(activity)),
        hours_cell(honor),
        hours_cell(unverified),
    ]


# --- streaming ------------------------------------------------------------------------------------


async def _keyset_chunks(
    sessionmaker: async_sessionmaker[AsyncSession],
    plan: ExportPlan,
    rows_of: Callable[[list[int]], Rows],
    cells: Callable[[Any], list[str | int]],
) -> AsyncIterator[list[list[str | int]]]:
    """Walk the period's orders in ``(created_at, id)`` keyset chunks; each chunk is one short
    transaction (keys, then the rows of those orders), so no connection waits on a slow client."""
    after: tuple[datetime, int] | None = None
    while True:
        async with sessionmaker() as session, session.begin():
            keys = (await session.execute(_cohort_keys(plan, after))).all()
            rows = (await session.execute(rows_of([k.id for k in keys]))).all() if keys else []
        if rows:
            yield [cells(row) for row in rows]
        if len(keys) < CHUNK_ROWS:
            return
        after = (keys[-1].created_at, keys[-1].id)


async def _cursor_chunks(
    sessionmaker: async_sessionmaker[AsyncSession], query: Rows, cells: Callable[[Any], list[str | int]]
) -> AsyncIterator[list[list[str | int]]]:
    async with sessionmaker() as session, session.begin():
        result = await session.stream(query.execution_options(yield_per=CHUNK_ROWS))
        async for rows in result.partitions():
            yield [cells(row) for row in rows]


def _activities(plan: ExportPlan) -> Rows:
    """活动: one row per sign-up of the subtree's activities with a slot starting in the period."""
    rows: Rows = activity_reports.activity_rows(plan.unit_path, plan.period.start, plan.period.end, local_time)
    return rows


def _activity_cells(row: Any) -> list[str | int]:
    return activity_reports.activity_cells(row, safe_text, hours_cell)


def export_chunks(
    sessionmaker: async_sessionmaker[AsyncSession], plan: ExportPlan
) -> tuple[Sequence[str], AsyncIterator[list[list[str | int]]]]:
    """The header of ``plan``'s file and its rows, chunk by chunk as they are read: one source for
    the CSV and the XLSX, so both have the same columns, filters and cells."""
    if plan.kind is ExportKind.ORDERS:
        return ORDER_HEADER, _keyset_chunks(sessionmaker, plan, _order_rows, _order_cells)
    if plan.kind is ExportKind.SERVICE_RECORDS:
        return RECORD_HEADER, _keyset_chunks(sessionmaker, plan, _record_rows, _record_cells)
    if plan.kind is ExportKind.ACTIVITIES:
        return activity_reports.ACTIVITY_HEADER, _cursor_chunks(sessionmaker, _activities(plan), _activity_cells)
    return HOURS_HEADER, _cursor_chunks(sessionmaker, _volunteer_hours(plan), _hours_cells)


async def stream_csv(sessionmaker: async_sessionmaker[AsyncSession], plan: ExportPlan) -> AsyncIterator[bytes]:
    """The CSV of ``plan``, chunk by chunk: BOM and header first, then rows as they are read."""
    header, body = export_chunks(sessionmaker, plan)
    yield BOM.encode("utf-8") + _csv_chunk([header])
    async for rows in body:
        yield _csv_chunk(rows)
