"""Staff tools of the dispatch engine: unit policies and ranked candidates for an order."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import transaction
from app.errors import NotFound
from app.models import Order, OrgUnit, UnitPolicy
from app.schemas.dispatching import CandidateOut, CandidatesOut, PolicyIn, PolicyOut
from app.services import candidates
from app.services.policies import effective_policy
from app.services.scope import order_visible_to


async def _unit_in_scope(session: AsyncSession, actor: Actor, unit_id: int) -> OrgUnit:
    unit = await session.get(OrgUnit, unit_id)
    if unit is None or not actor.administers(unit.path):
        raise NotFound("单位不存在")
    return unit


async def get_policy(session: AsyncSession, actor: Actor, unit_id: int) -> PolicyOut:
    """The policy in force at a unit of the caller's subtree, and where it comes from."""
    async with transaction(session):
        unit = await _unit_in_scope(session, actor, unit_id)
        policy = await effective_policy(session, unit.path)
    values = {k: v for k, v in asdict(policy).items() if k != "source_unit_id"}
    return PolicyOut(unit_id=unit_id, inherited_from_unit_id=policy.source_unit_id, **values)


async def set_policy(session: AsyncSession, actor: Actor, unit_id: int, body: PolicyIn) -> PolicyOut:
    """Set a unit's own policy (admins of that unit or above)."""
    async with transaction(session):
        await _unit_in_scope(session, actor, unit_id)
        values = body.model_dump(mode="json") | {"updated_at": datetime.now(UTC), "updated_by_id": actor.user_id}
        await session.execute(
            insert(UnitPolicy)
            .values(unit_id=unit_id, **values)
            .on_conflict_do_update(index_elements=[UnitPolicy.unit_id], set_=values)
        )
    return PolicyOut(unit_id=unit_id, inherited_from_unit_id=unit_id, **body.model_dump())


async def order_candidates(session: AsyncSession, actor: Actor, order_id: int) -> CandidatesOut:
    """Ranked teams and volunteers for an order of the caller's subtree, with the parts of each score."""
    async with transaction(session):
        order = (
            await session.execute(select(Order).where(Order.id == order_id, order_visible_to(actor)))
        ).scalar_one_or_none()
        if order is None:
            raise NotFound("订单不存在")
        volunteers = await candidates.volunteer_candidates(session, order)
        teams = await candidates.team_candidates(session, order)
    return CandidatesOut(
        order_id=order_id,
        volunteers=[CandidateOut.model_validate(asdict(c)) for c in volunteers],
        teams=[CandidateOut.model_validate(asdict(c)) for c in teams],
        scoring=candidates.__doc__ or "",
    )
