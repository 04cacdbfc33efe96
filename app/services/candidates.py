"""候选人排序: who could serve an order, ranked by a score whose parts are shown to staff.

Eligible: active, homed (volunteers) or based (teams) in the owning unit's subtree, serving the order's
menu category (a volunteer directly or through a team), and below their open-order limit.

Not offered: a volunteer without a valid qualification of every kind the menu item requires (急救证 …,
``app.services.qualifications``); a team none of whose members holds them all.

Score, out of 135 (higher is better):

| part | points | how |
|---|---|---|
| distance (就近原则) | 0–40 | ``40 × max(0, 1 − km / 20)`` when both have coordinates; 10 when unknown |
| category | 0–30 | 30 signed up for the category, 20 serving it only through a team, 0 when the order has none |
| load | 0–20 | ``20 × (1 − open / limit)``; open = dispatched, accepted or in service |
| reliability | 0–20 | ``20 × (accepted + 1) / (accepted + declined + released + expired + 2)``; teams 10 |
| rating | 0–10 | ``10 × (average stars − 1) / 4`` over rated orders they served; 5 when never rated |
| skill | 0–15 | ``15 × share of the item's required skills held`` (a team: by its members); 0 if none required |
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import and_, exists, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.domain import Action, Status
from app.models import (
    Order,
    OrderEvent,
    OrderView,
    OrgUnit,
    Rating,
    Team,
    TeamMember,
    Volunteer,
    team_categories,
    volunteer_categories,
)
from app.services.qualifications import holds_all, requirements_of, service_day, skill_share
from app.services.scope import subtree

OPEN_STATES = (Status.DISPATCHED.value, Status.ACCEPTED.value, Status.IN_SERVICE.value)
NEARBY_KM = 20.0
WEIGHTS = {"distance": 40, "category": 30, "load": 20, "reliability": 20, "rating": 10, "skill": 15}


@dataclass(frozen=True, slots=True)
class Candidate:
    kind: Literal["volunteer", "team"]
    id: int
    name: str
    unit_id: int
    score: float
    parts: dict[str, float]
    details: dict[str, Any]


def distance_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(min(1.0, a)))


def _distance_part(order: OrderView, lat: float | None, lng: float | None) -> tuple[float, float | None]:
    if order.lat is None or order.lng is None or lat is None or lng is None:
        return 10.0, None
    km = distance_km(order.lat, order.lng, lat, lng)
    return WEIGHTS["distance"] * max(0.0, 1 - km / NEARBY_KM), round(km, 2)


def _rating_part(avg: Decimal | float | None) -> float:
    return 5.0 if avg is None else WEIGHTS["rating"] * (float(avg) - 1) / 4


async def tried_this_round(session: AsyncSession, order: OrderView) -> set[int]:
    """Volunteers already offered this order since its last 返工 (dispatched to, declined, released, expired)."""
    last_reopen = (
        select(func.coalesce(func.max(OrderEvent.id), 0))
        .where(OrderEvent.order_id == order.id, OrderEvent.action == Action.REOPEN.value)
        .scalar_subquery()
    )
    payloads = (
        await session.execute(
            select(OrderEvent.payload).where(
                OrderEvent.order_id == order.id,
                OrderEvent.id > last_reopen,
                OrderEvent.action.in_(
                    [
                        Action.DISPATCH.value,
                        Action.DECLINE.value,
                        Action.RELEASE.value,
                        Action.EXPIRE.value,
                        Action.WITHDRAW.value,
                    ]
                ),
            )
        )
    ).scalars()
    tried: set[int] = set()
    for payload in payloads:
        for key in ("volunteer_id", "previous_volunteer_id"):
            if isinstance(payload.get(key), int):
                tried.add(payload[key])
    return tried


async def volunteer_candidates(session: AsyncSession, order: OrderView) -> list[Candidate]:
    open_load = (
        select(func.count())
        .where(Order.assignee_volunteer_id == Volunteer.id, Order.status.in_(OPEN_STATES))
        .scalar_subquery()
    )
    direct = exists().where(
        volunteer_categories.c.volunteer_id == Volunteer.id,
        volunteer_categories.c.category_id == order.category_id,
    )
    via_team = exists().where(
        TeamMember.volunteer_id == Volunteer.id,
        team_categories.c.team_id == TeamMember.team_id,
        team_categories.c.category_id == order.category_id,
    )
    served = aliased(Order)
    rating = (
        select(func.avg(Rating.stars), func.count(Rating.id))
        .join(served, served.id == Rating.order_id)
        .where(served.assignee_volunteer_id == Volunteer.id)
        .lateral()
    )
    query = (
        select(Volunteer, OrgUnit.id, open_load, direct, via_team, rating.c[0], rating.c[1])
        .join(OrgUnit, OrgUnit.id == Volunteer.home_unit_id)
        .join(rating, true())
        .where(
            Volunteer.status == "active",
            subtree(OrgUnit.path, order.unit_path),
            open_load < Volunteer.max_open_orders,
        )
    )
    if order.category_id is not None:
        query = query.where(direct | via_team)
    skills, kinds = await requirements_of(session, order.item_id)
    query = query.where(*holds_all(Volunteer.id, kinds, service_day(order.preferred_start)))
    tried = await tried_this_round(session, order)
    result: list[Candidate] = []
    for volunteer, unit_id, load, is_direct, _via_team, avg, rated in (await session.execute(query)).all():
        distance, km = _distance_part(order, volunteer.lat, volunteer.lng)
        category = 0.0 if order.category_id is None else (30.0 if is_direct else 20.0)
        attempts = (
            volunteer.accepted_count + volunteer.declined_count + volunteer.released_count + volunteer.expired_count
        )
        parts = {
            "distance": distance,
            "category": category,
            "load": WEIGHTS["load"] * (1 - load / max(volunteer.max_open_orders, 1)),
            "reliability": WEIGHTS["reliability"] * (volunteer.accepted_count + 1) / (attempts + 2),
            "rating": _rating_part(avg),
            "skill": WEIGHTS["skill"] * skill_share(skills, volunteer.skills),
        }
        parts = {k: round(v, 2) for k, v in parts.items()}
        result.append(
            Candidate(
                kind="volunteer", id=volunteer.id, name=volunteer.real_name, unit_id=unit_id,
                score=round(sum(parts.values()), 2), parts=parts,
                details={
                    "distance_km": km, "open_orders": load, "max_open_orders": volunteer.max_open_orders,
                    "accepted": volunteer.accepted_count, "declined": volunteer.declined_count,
                    "released": volunteer.released_count, "expired": volunteer.expired_count,
                    "rating_avg": round(float(avg), 2) if avg is not None else None, "rating_count": rated,
                    "tried_this_round": volunteer.id in tried,
                    "skills_matched": [k for k in skills if k in (volunteer.skills or ())], "skills_required": skills,
                },
            )
        )  # fmt: skip
    return sorted(result, key=lambda c: (-c.score, c.id))


async def team_candidates(session: AsyncSession, order: OrderView) -> list[Candidate]:
    open_load = (
        select(func.count()).where(Order.assignee_team_id == Team.id, Order.status.in_(OPEN_STATES)).scalar_subquery()
    )
    members = select(func.count()).where(TeamMember.team_id == Team.id).scalar_subquery()
    served = aliased(Order)
    rating = (
        select(func.avg(Rating.stars), func.count(Rating.id))
        .join(served, served.id == Rating.order_id)
        .where(served.assignee_team_id == Team.id)
        .lateral()
    )
    query = (
        select(Team, OrgUnit.lat, OrgUnit.lng, open_load, members, rating.c[0], rating.c[1])
        .join(OrgUnit, OrgUnit.id == Team.unit_id)
        .join(rating, true())
        .where(Team.is_active.is_(True), subtree(OrgUnit.path, order.unit_path), members > 0, open_load < members)
    )
    if order.category_id is not None:
        query = query.where(
            exists().where(
                and_(team_categories.c.team_id == Team.id, team_categories.c.category_id == order.category_id)
            )
        )
    skills, kinds = await requirements_of(session, order.item_id)
    if kinds:  # some member could take it
        day = service_day(order.preferred_start)
        qualified_member = holds_all(TeamMember.volunteer_id, kinds, day)
        query = query.where(exists().where(TeamMember.team_id == Team.id, *qualified_member))
    rows = (await session.execute(query)).all()
    team_skills: dict[int, set[str]] = {}
    if skills and rows:
        member_rows = await session.execute(
            select(TeamMember.team_id, Volunteer.skills)
            .join(Volunteer, Volunteer.id == TeamMember.volunteer_id)
            .where(TeamMember.team_id.in_([row[0].id for row in rows]), Volunteer.status == "active")
        )
        for team_id, member_skills in member_rows.all():
            team_skills.setdefault(team_id, set()).update(member_skills or ())
    result: list[Candidate] = []
    for team, lat, lng, load, size, avg, rated in rows:
        distance, km = _distance_part(order, lat, lng)
        parts = {
            "distance": distance,
            "category": 0.0 if order.category_id is None else 30.0,
            "load": WEIGHTS["load"] * (1 - load / max(size, 1)),
            "reliability": 10.0,
            "rating": _rating_part(avg),
            "skill": WEIGHTS["skill"] * skill_share(skills, sorted(team_skills.get(team.id, ()))),
        }
        parts = {k: round(v, 2) for k, v in parts.items()}
        result.append(
            Candidate(
                kind="team", id=team.id, name=team.name, unit_id=team.unit_id,
                score=round(sum(parts.values()), 2), parts=parts,
                details={"distance_km": km, "open_orders": load, "members": size,
                         "rating_avg": round(float(avg), 2) if avg is not None else None, "rating_count": rated},
            )
        )  # fmt: skip
    return sorted(result, key=lambda c: (-c.score, c.id))


async def best_volunteer(session: AsyncSession, order: OrderView) -> int | None:
    """The top-ranked volunteer not yet offered this order in this round (auto-assign)."""
    for candidate in await volunteer_candidates(session, order):
        if not candidate.details["tried_this_round"]:
            return candidate.id
    return None
