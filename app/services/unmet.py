"""未满足需求: where demand goes unmet, for one unit's subtree and period.

An order *nobody took* was placed in the period, has never been accepted, and is (in this order of
precedence) rejected (驳回), cancelled before acceptance, still open after being escalated (上报) to a
中心 or above — the top of the 站→所→中心 chain — or still open after a dispatch or pool ran out (超时).
Its wait runs from placing to its rejection or cancellation, or to now while it is still open.

Like ``app.services.stats``, everything starts from one cohort read from ``ix_orders_stats_cohort``
(the subtree's orders placed in the period, index-only) and reaches events through
``ix_order_events_counted``; only the few unmet orders touch the table (their owner's level, the time
they ended). Volunteers per category come from the category link tables of the subtree's active
volunteers and teams.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Float, and_, case, cast, exists, func, literal, or_, select, text, union
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import transaction
from app.domain import Action, Status
from app.models import (
    MenuCategory,
    Order,
    OrderEvent,
    OrgUnit,
    TeamMember,
    Volunteer,
    team_categories,
    volunteer_categories,
)
from app.schemas.unmet import UnmetCell, UnmetOut
from app.services.directory_units import jurisdiction, unit_in_scope
from app.services.scope import subtree
from app.services.stats import TIMEZONE, Period, child_key

OPEN_STATES: Final = (Status.SUBMITTED.value, Status.APPROVED.value, Status.DISPATCHED.value, Status.POOLED.value)
TOP_LEVELS: Final = ("center", "city", "province")
REASONS: Final = ("rejected", "cancelled_before_accept", "escalated_to_top", "expired")


def _had(order_id: Any, action: Action) -> Any:
    return exists().where(OrderEvent.order_id == order_id, OrderEvent.action == action.value)


def _cohort(unit: OrgUnit, period: Period) -> Any:
    return (
        select(
            Order.id,
            Order.status,
            Order.category_id,
            Order.created_at,
            Order.accepted_at,
            child_key(Order.unit_path, unit.path).label("g"),
        )
        .where(subtree(Order.unit_path, unit.path), Order.created_at >= period.start, Order.created_at < period.end)
        .cte("cohort")
    )


def _reasons(cohort: Any, now: datetime) -> Any:
    """Each unmet order of the cohort with its reason and wait (seconds)."""
    c = cohort.c
    top = select(OrgUnit.level).where(OrgUnit.id == Order.unit_id).scalar_subquery()
    reason = case(
        (c.status == Status.REJECTED.value, literal("rejected")),
        (c.status == Status.CANCELLED.value, literal("cancelled_before_accept")),
        (and_(_had(c.id, Action.ESCALATE), top.in_(TOP_LEVELS)), literal("escalated_to_top")),
        (_had(c.id, Action.EXPIRE), literal("expired")),
        else_=literal(None),
    )
    # Rejected and cancelled orders are final: their last change is when they ended.
    ended = case((c.status.in_(OPEN_STATES), literal(now)), else_=Order.updated_at)
    return (
        select(
            c.g,
            c.category_id,
            reason.label("reason"),
            cast(func.extract("epoch", ended - c.created_at), Float).label("wait"),
        )
        .select_from(cohort)
        .join(Order, Order.id == c.id)
        .where(
            c.accepted_at.is_(None),
            or_(
                c.status.in_((Status.REJECTED.value, Status.CANCELLED.value)),
                and_(c.status.in_(OPEN_STATES), or_(_had(c.id, Action.ESCALATE), _had(c.id, Action.EXPIRE))),
            ),
        )
        .subquery("unmet")
    )


def _volunteers_per_category(unit: OrgUnit) -> Any:
    """(child key, category, active volunteers serving it) under ``unit``."""
    home = select(OrgUnit.id, OrgUnit.path).where(subtree(OrgUnit.path, unit.path)).subquery("home")
    own = select(volunteer_categories.c.volunteer_id, volunteer_categories.c.category_id)
    via_team = select(TeamMember.volunteer_id, team_categories.c.category_id).join(
        team_categories, team_categories.c.team_id == TeamMember.team_id
    )
    serves = union(own, via_team).subquery("serves")
    key = child_key(home.c.path, unit.path)
    return (
        select(key.label("g"), serves.c.category_id, func.count(serves.c.volunteer_id.distinct()).label("n"))
        .select_from(Volunteer)
        .join(home, home.c.id == Volunteer.home_unit_id)
        .join(serves, serves.c.volunteer_id == Volunteer.id)
        .where(Volunteer.status == "active")
        .group_by(key, serves.c.category_id)
    )


def _grid(rows: list[Any]) -> list[list[int]]:
    grid = [[0] * 24 for _ in range(7)]
    for dow, hour, n in rows:
        grid[int(dow) - 1][int(hour)] = int(n)
    return grid


def _heat(cohort: Any, column: Any) -> Any:
    local = func.timezone(TIMEZONE, column)
    dow, hour = func.extract("isodow", local), func.extract("hour", local)
    return select(dow, hour, func.count()).select_from(cohort).where(column.is_not(None)).group_by(dow, hour)


async def unmet_demand(
    session: AsyncSession, actor: Actor, *, unit_id: int | None, period: Period, now: datetime | None = None
) -> UnmetOut:
    """未满足需求 of ``unit_id`` (default: the caller's unit) and its subtree over ``period``; a unit
    outside the caller's subtree is 404."""
    now = now or datetime.now(UTC)
    jurisdiction(actor)
    async with transaction(session):
        await session.execute(text("SET LOCAL jit = off"))
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        unit = await unit_in_scope(session, actor, unit_id if unit_id is not None else actor.unit_id or 0)
        cohort = _cohort(unit, period)
        placed_rows = (
            await session.execute(
                select(cohort.c.g, cohort.c.category_id, func.count()).group_by(cohort.c.g, cohort.c.category_id)
            )
        ).all()
        unmet = _reasons(cohort, now)
        quantiles = literal([0.5, 0.9], ARRAY(Float))
        unmet_rows = (
            await session.execute(
                select(
                    unmet.c.g,
                    unmet.c.category_id,
                    *(func.count().filter(unmet.c.reason == r).label(r) for r in REASONS),
                    func.percentile_cont(quantiles).within_group(unmet.c.wait),
                )
                .where(unmet.c.reason.is_not(None))
                .group_by(unmet.c.g, unmet.c.category_id)
            )
        ).all()
        arrivals = _grid(list(await session.execute(_heat(cohort, cohort.c.created_at))))
        acceptances = _grid(list(await session.execute(_heat(cohort, cohort.c.accepted_at))))
        volunteers = {(g, cat): int(n) for g, cat, n in (await session.execute(_volunteers_per_category(unit))).all()}
        child_rows = await session.execute(select(OrgUnit.id, OrgUnit.name).where(OrgUnit.parent_id == unit.id))
        children: dict[int, str] = {r[0]: r[1] for r in child_rows}
        category_rows = await session.execute(select(MenuCategory.id, MenuCategory.name))
        categories: dict[int, str] = {r[0]: r[1] for r in category_rows}

    by_cell = {(r[0], r[1]): r for r in unmet_rows}
    cells = []
    for g, category_id, placed in placed_rows:
        row = by_cell.get((g, category_id))
        counts = {r: int(row._mapping[r]) if row is not None else 0 for r in REASONS}
        waits = row[-1] if row is not None else None
        total = sum(counts.values())
        serving = volunteers.get((g, category_id), 0) if category_id is not None else 0
        child_id = int(g) if g else unit.id
        cells.append(
            UnmetCell(
                unit_id=child_id,
                unit_label=children.get(child_id, f"{unit.name} (本级)") if g else f"{unit.name} (本级)",
                category_id=category_id,
                category_label=categories.get(category_id, "自定义需求") if category_id is not None else "自定义需求",
                placed=int(placed),
                unmet=total,
                unmet_rate=total / placed if placed else None,
                wait_median_seconds=waits[0] if waits else None,
                wait_p90_seconds=waits[1] if waits else None,
                active_volunteers=serving,
                orders_per_volunteer=placed / serving if serving else None,
                **counts,
            )
        )
    cells.sort(key=lambda cell: (-cell.unmet, -cell.placed, cell.unit_id, cell.category_id or 0))
    return UnmetOut(
        unit_id=unit.id,
        unit_name=unit.name,
        period_from=period.start,
        period_to=period.end,
        placed=sum(cell.placed for cell in cells),
        unmet=sum(cell.unmet for cell in cells),
        cells=cells,
        arrivals=arrivals,
        acceptances=acceptances,
    )
