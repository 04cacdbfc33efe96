"""The volunteer's side: task lists (派给我的 / 抢单池) and the profile (hours from the ledger, star level)."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import BigInteger, Float, Integer, any_, bindparam, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import transaction
from app.domain import Status
from app.errors import NotFound
from app.models import Order, TeamMember, Volunteer
from app.schemas.common import Page
from app.schemas.orders import OrderOut
from app.schemas.volunteers import StarLevel, VolunteerMe
from app.services import ledger, offers
from app.services.pagination import newest_first, page_of, page_params
from app.services.presenters import present_order
from app.services.qualifications import lacks_a_qualification
from app.services.scope import POOL_REGION, scope_params

# 全国志愿服务信息系统: 1★–5★ at 100 / 300 / 600 / 1,000 / 1,500 certified hours.
STAR_THRESHOLDS: tuple[Decimal, ...] = tuple(Decimal(h) for h in (100, 300, 600, 1000, 1500))

ACTIVE_ASSIGNED = (Status.DISPATCHED, Status.ACCEPTED, Status.IN_SERVICE)


def star_level(hours: Decimal) -> StarLevel:
    """星级 from 信用时长 (service + audited adjustments). 荣誉时长 never counts: the registry certifies
    only hours recorded through service, and so do we."""
    stars = sum(1 for threshold in STAR_THRESHOLDS if hours >= threshold)
    current = STAR_THRESHOLDS[stars - 1] if stars else Decimal(0)
    if stars == len(STAR_THRESHOLDS):
        return StarLevel(
            stars=stars,
            next_stars=None,
            hours_to_next=None,
            current_threshold=current,
            next_threshold=None,
            progress=1.0,
        )
    target = STAR_THRESHOLDS[stars]
    return StarLevel(
        stars=stars,
        next_stars=stars + 1,
        hours_to_next=target - hours,
        current_threshold=current,
        next_threshold=target,
        progress=round(float(max(hours - current, Decimal(0)) / (target - current)), 4),
    )


# The task lists' statements, built once: the caller's values are parameters (``scope_params``,
# ``page_params``), so each request reuses a compiled statement instead of building and keying a new
# one (half a millisecond for the pool's).
_VOLUNTEER = bindparam("scope_volunteer_id", type_=BigInteger)
_ASSIGNED = {
    after_cursor: newest_first(
        select(Order).where(
            or_(
                Order.assignee_volunteer_id == _VOLUNTEER,
                Order.assignee_team_id == any_(bindparam("scope_team_ids", type_=ARRAY(BigInteger))),
            ),
            Order.status.in_([s.value for s in ACTIVE_ASSIGNED]),
        ),
        Order.created_at,
        Order.id,
        after_cursor=after_cursor,
    )
    for after_cursor in (False, True)
}
_HOME = select(Volunteer.lat, Volunteer.lng).where(Volunteer.id == _VOLUNTEER)
# Equirectangular distance from the volunteer's home: exact enough to rank within a county, and cheap.
_SQUARED_DISTANCE = func.power(Order.lat - bindparam("home_lat", type_=Float), 2) + func.power(
    (Order.lng - bindparam("home_lng", type_=Float)) * bindparam("home_lng_scale", type_=Float), 2
)
# Not the orders whose menu item requires a qualification the volunteer lacks (they could not grab them).
_POOL = select(Order).where(
    Order.status == Status.POOLED.value,
    POOL_REGION,
    ~lacks_a_qualification(_VOLUNTEER, Order.item_id, Order.preferred_start),
)
_BY_DEADLINE = (Order.deadline_at.asc().nulls_last(), Order.id.asc())
_POOL_ROWS = bindparam("page_rows", type_=Integer)
_POOL_NEAREST_FIRST = _POOL.order_by(_SQUARED_DISTANCE.asc().nulls_last(), *_BY_DEADLINE).limit(_POOL_ROWS)
_POOL_BY_DEADLINE = _POOL.order_by(*_BY_DEADLINE).limit(_POOL_ROWS)


async def tasks(
    session: AsyncSession, actor: Actor, kind: Literal["assigned", "pool"], cursor: str | None, limit: int
) -> Page[OrderOut]:
    """``assigned``: dispatched to me or my team, or held by me, not yet finished (newest first, keyset).
    ``pool``: open grab pools I am eligible for, nearest first when both sides have coordinates."""
    async with transaction(session):
        if kind == "pool":
            return await _pool(session, actor, limit)
        params = scope_params(actor) | page_params(cursor, limit)
        rows = list((await session.execute(_ASSIGNED[bool(cursor)], params)).scalars())
        items, next_cursor = page_of(rows, limit)
        unqualified = await offers.lacking(session, actor, items)
        return Page[OrderOut](
            items=[present_order(o, actor, unqualified=o.id in unqualified) for o in items], next_cursor=next_cursor
        )


async def _pool(session: AsyncSession, actor: Actor, limit: int) -> Page[OrderOut]:
    params: dict[str, Any] = scope_params(actor) | {"page_rows": limit}
    home = (await session.execute(_HOME, params)).one_or_none()
    lat, lng = home if home is not None else (None, None)
    query = _POOL_BY_DEADLINE
    if lat is not None and lng is not None:
        query = _POOL_NEAREST_FIRST
        params |= {"home_lat": lat, "home_lng": lng, "home_lng_scale": math.cos(math.radians(lat))}
    rows = (await session.execute(query, params)).scalars()
    return Page[OrderOut](items=[present_order(o, actor) for o in rows], next_cursor=None)


async def volunteer_me(session: AsyncSession, actor: Actor) -> VolunteerMe:
    """我的: 信用时长 and 荣誉时长 (apart), 积分, 星级 (from 信用 only), ratings of the rounds I served."""
    async with transaction(session):
        volunteer = await session.get(Volunteer, actor.volunteer_id) if actor.volunteer_id else None
        if volunteer is None:
            raise NotFound("志愿者档案不存在")
        hours = await ledger.hours_totals(session, [volunteer.id])
        points = await ledger.points_balance(session, [volunteer.id])
        served = await ledger.served_stats(session, [volunteer.id])
        team_ids = sorted(
            (await session.execute(select(TeamMember.team_id).where(TeamMember.volunteer_id == volunteer.id)))
            .scalars()
            .all()
        )
    return VolunteerMe(
        id=volunteer.id,
        user_id=volunteer.user_id,
        real_name=volunteer.real_name,
        phone=volunteer.phone,
        home_unit_id=volunteer.home_unit_id,
        skills=list(volunteer.skills),
        status=volunteer.status,
        team_ids=team_ids,
        service_hours=hours.credit,
        honor_hours=hours.honor,
        service_count=served.service_count,
        points=points,
        star_level=star_level(hours.credit),
        rating_avg=served.rating_avg,
        rating_count=served.rating_count,
    )
