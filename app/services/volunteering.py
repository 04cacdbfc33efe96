"""The volunteer's side: task lists (派给我的 / 抢单池) and the profile (hours from the ledger, star level)."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import transaction
from app.domain import Status
from app.errors import NotFound
from app.models import Order, TeamMember, Volunteer
from app.schemas.common import Page
from app.schemas.orders import OrderOut
from app.schemas.volunteers import StarLevel, VolunteerMe
from app.services import ledger
from app.services.pagination import keyset, page_of
from app.services.presenters import present_order
from app.services.scope import in_pool_region

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


async def tasks(
    session: AsyncSession, actor: Actor, kind: Literal["assigned", "pool"], cursor: str | None, limit: int
) -> Page[OrderOut]:
    """``assigned``: dispatched to me or my team, or held by me, not yet finished (newest first, keyset).
    ``pool``: open grab pools I am eligible for, nearest first when both sides have coordinates."""
    async with transaction(session):
        if kind == "pool":
            return await _pool(session, actor, limit)
        mine = [Order.assignee_volunteer_id == actor.volunteer_id]
        if actor.team_ids:
            mine.append(Order.assignee_team_id.in_(actor.team_ids))
        where = [or_(*mine), Order.status.in_([s.value for s in ACTIVE_ASSIGNED])]
        query = keyset(select(Order).where(*where), Order.created_at, Order.id, cursor, limit)
        rows = list((await session.execute(query)).scalars())
        items, next_cursor = page_of(rows, limit)
        return Page[OrderOut](items=[present_order(o, actor) for o in items], next_cursor=next_cursor)


async def _pool(session: AsyncSession, actor: Actor, limit: int) -> Page[OrderOut]:
    query = select(Order).where(Order.status == Status.POOLED.value, in_pool_region(actor))
    home = (
        await session.execute(select(Volunteer.lat, Volunteer.lng).where(Volunteer.id == actor.volunteer_id))
    ).one_or_none()
    order_by: list[Any] = []
    lat, lng = home if home is not None else (None, None)
    if lat is not None and lng is not None:
        # Equirectangular distance: exact enough to rank within a county, and cheap.
        squared = func.power(Order.lat - lat, 2) + func.power((Order.lng - lng) * math.cos(math.radians(lat)), 2)
        order_by.append(squared.asc().nulls_last())
    order_by += [Order.deadline_at.asc().nulls_last(), Order.id.asc()]
    rows = (await session.execute(query.order_by(*order_by).limit(limit))).scalars()
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
