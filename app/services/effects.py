"""What each action does beyond the status change: one function per action, named in its spec
(``app.workflow.ACTIONS``).

An effect runs after the rule and guard were checked and before anything is written. It may read
(each read its own prebuilt statement, ``Prepared``), refuse (a ``DomainError``: nothing is written),
change the detached order in memory, and add parts to the one statement that writes the transition
(``Change.add_write``: a service record, a rating), which then write only if the order is still at
the version read. So an effect never writes on its own, and a transition that lost a race leaves
nothing behind.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import BigInteger, Integer, String, and_, any_, bindparam, exists, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import aliased

from app.auth import Actor
from app.domain import Role, Status
from app.errors import Conflict, Forbidden, InvalidInput
from app.models import OrderRow, OrgUnit, ServiceParticipant, ServiceRecord, TeamMember, Volunteer
from app.prepared import Prepared, RawConnection
from app.schemas.ledger import HoursKind, PointsKind
from app.schemas.orders import CheckInBody, CompleteBody, DispatchBody, OrderRating, PublishBody, RateBody, TransferBody
from app.services import effect_rows, ledger, presence
from app.services.policies import Policy, policy_at
from app.services.statements import WritePart

FOLLOWUP_STARS = 2  # ratings at or below this flag the order for 回访


@dataclass(slots=True)
class Change:
    """What one transition is doing, handed to the action's effect."""

    db: RawConnection
    order: OrderRow
    actor: Actor
    body: BaseModel
    now: datetime
    policy: Policy  # in force at the order's unit (an effect that moves the order reads the new one)
    read: Mapping[str, Any]  # the row the order was read in, with what the action's spec asked for
    event_payload: dict[str, Any] = field(default_factory=dict)
    deadline_minutes: int | None = None  # set by dispatch/publish when the request names one
    writes: dict[WritePart, dict[str, Any]] = field(default_factory=dict)
    rating: OrderRating | None = None  # set by rate: shown in the answer

    def add_write(self, part: WritePart, params: dict[str, Any]) -> None:
        """Write ``part`` (with ``params``) in the transition's one statement, if the order is written."""
        self.writes[part] = params


Effect = Callable[[Change], Awaitable[None]]


# ---- moving the order between units -------------------------------------------------------------

_child = aliased(OrgUnit)
_PARENT = Prepared(
    select(OrgUnit.id, OrgUnit.path)
    .join(_child, _child.parent_id == OrgUnit.id)
    .where(_child.id == bindparam("unit_id", type_=BigInteger))
)
_UNIT = Prepared(
    select(OrgUnit.id, OrgUnit.path, OrgUnit.is_active).where(OrgUnit.id == bindparam("unit_id", type_=BigInteger))
)


async def _move(change: Change, unit_id: int, unit_path: str) -> None:
    order = change.order
    change.event_payload |= {"from_unit_id": order.unit_id, "to_unit_id": unit_id}
    order.unit_id, order.unit_path = unit_id, unit_path
    change.policy = await policy_at(change.db, unit_path)


async def escalate(change: Change) -> None:
    """上报: the owner becomes the parent unit."""
    parent = await _PARENT.fetchrow(change.db, {"unit_id": change.order.unit_id})
    if parent is None:
        raise Conflict("已是最高一级单位, 无法上报", status=change.order.status)
    await _move(change, parent["id"], parent["path"])


async def transfer(change: Change) -> None:
    """层层派单: hand the order to another unit in the actor's subtree."""
    assert isinstance(change.body, TransferBody)
    target_id = change.body.unit_id
    target = await _UNIT.fetchrow(change.db, {"unit_id": target_id})
    if target is None or not target["is_active"] or not change.actor.administers(target["path"]):
        raise InvalidInput("目标单位不存在或不在本单位管辖范围内", unit_id=target_id)
    if target["id"] == change.order.unit_id:
        raise InvalidInput("订单已属于该单位", unit_id=target_id)
    await _move(change, target["id"], target["path"])


# ---- dispatching and taking -----------------------------------------------------------------------


async def dispatch(change: Change) -> None:
    """指令性派单 to one team or one volunteer in the actor's jurisdiction, with an accept deadline.
    The target's unit path was read with the order (``Read.DISPATCH_TARGET``)."""
    assert isinstance(change.body, DispatchBody)
    body, actor = change.body, change.actor
    # Staff direct their own people; the system (auto-assign) stays within the order's unit.
    jurisdiction = change.order.unit_path if actor.role is Role.SYSTEM else (actor.unit_path or "\0")
    if body.team_id is not None:
        path = change.read["target_team_path"]
        if path is None or not path.startswith(jurisdiction):
            raise InvalidInput("服务队不存在、已停用或不在管辖范围内", team_id=body.team_id)
        change.order.assignee_team_id = body.team_id
    else:
        path = change.read["target_volunteer_path"]
        if path is None or not path.startswith(jurisdiction):
            raise InvalidInput("志愿者不存在、未激活或不在管辖范围内", volunteer_id=body.volunteer_id)
        if missing := change.read["target_missing_qualifications"]:
            message = f"志愿者缺少有效资质: {'、'.join(missing)}"
            raise InvalidInput(message, volunteer_id=body.volunteer_id, missing_qualifications=missing)
        change.order.assignee_volunteer_id = body.volunteer_id
    change.deadline_minutes = body.accept_within_minutes


def dispatch_target_params(body: BaseModel) -> dict[str, Any]:
    """The parameters of ``Read.DISPATCH_TARGET``'s columns."""
    assert isinstance(body, DispatchBody)
    return {"target_team_id": body.team_id, "target_volunteer_id": body.volunteer_id}


async def publish(change: Change) -> None:
    assert isinstance(change.body, PublishBody)
    change.deadline_minutes = change.body.accept_within_minutes


# The SQLSTATE of the database's own check of that limit (migration 5e1f0c2a7b9d): two grabs by one
# volunteer each read the count before the other wrote; the statement of the second one fails.
OVER_THE_LIMIT = "SD001"


def over_the_limit(status: str, limit: int | None = None) -> Conflict:
    shown = f" ({limit})" if limit is not None else ""
    return Conflict(f"同时服务的订单已达上限{shown}", status=status, limit=limit)


async def take(change: Change) -> None:
    """接单 / 抢单: the calling volunteer now holds the order. They must hold a valid qualification of every
    kind the menu item requires (read with the order, ``Read.QUALIFIED``; 403 otherwise). A grab must
    respect the volunteer's limit of orders in hand (staff may knowingly dispatch beyond it): the count
    read with the order (``Read.IN_HAND``) refuses early, the database's check at the write is the
    guarantee."""
    volunteer_id = change.actor.volunteer_id
    if missing := change.read["caller_missing_qualifications"]:  # Read.QUALIFIED (资质要求)
        message = f"缺少此服务要求的有效资质: {'、'.join(missing)}"
        raise Forbidden(message, status=change.order.status, missing_qualifications=missing)
    if change.order.status == Status.POOLED.value:
        most = change.read["caller_max_open_orders"]
        if most is not None and change.read["caller_in_hand"] >= most:
            raise over_the_limit(change.order.status, most)
    change.order.assignee_volunteer_id = volunteer_id
    change.order.accepted_at = change.order.accepted_at or change.now


async def check_in(change: Change) -> None:
    """签到 with the proof the body carries, as the unit's policy accepts it (``app.services.presence``):
    refused (422, 409 for a used code) with nothing written. A code is marked used by the transition's
    one statement."""
    assert isinstance(change.body, CheckInBody)
    order = change.order
    subject = presence.order_subject(order.id)
    proved = presence.prove(change.policy, subject, (order.lat, order.lng), change.body, change.now)
    if proved.code_window is not None:
        change.add_write(presence.code_use_row, presence.code_use_params(subject, proved.code_window, change.now))
    order.checked_in_at = change.now
    order.presence_proof = None if proved.proof is None else proved.proof.value
    change.event_payload |= proved.payload()


async def confirm_presence(change: Change) -> None:
    """管理员确认到场, with a reason (in the timeline): checks in for the volunteer holding the order
    (from 已接单), or proves a check-in made without proof (服务中, 未核验), where the unit's policy
    accepts an admin's confirmation. An order whose presence is already proven: 409."""
    order = change.order
    presence.accepts(change.policy, presence.Proof.ADMIN)
    if order.status == Status.IN_SERVICE.value:
        if order.presence_proof is not None:
            raise Conflict(
                f"签到已核验 ({presence.PROOF_LABELS[order.presence_proof]})",
                status=order.status,
                presence_proof=order.presence_proof,
            )
        change.event_payload["confirms_check_in_at"] = order.checked_in_at.isoformat() if order.checked_in_at else None
    else:
        order.checked_in_at = change.now
        change.event_payload["on_behalf_of_volunteer_id"] = order.assignee_volunteer_id
    order.presence_proof = presence.Proof.ADMIN.value
    change.event_payload |= presence.Presence(presence.Proof.ADMIN).payload()


# ---- completing: the service record and its hours and points ----------------------------------------

# Who may be credited for serving an order (参与者): the volunteer holding it; active members of the team
# it was dispatched to; active volunteers whose home unit lies in the order's unit's subtree, named by
# the one holding it. Nobody else: hours and points go only to people who could have served.
_PARTICIPANTS = Prepared(
    select(Volunteer.id)
    .join(OrgUnit, OrgUnit.id == Volunteer.home_unit_id)
    .where(
        Volunteer.id == any_(bindparam("volunteer_ids", type_=ARRAY(BigInteger))),
        or_(
            Volunteer.id == bindparam("assignee_id", type_=BigInteger),
            and_(
                Volunteer.status == "active",
                or_(
                    OrgUnit.path.startswith(bindparam("unit_path", type_=String)),
                    exists().where(
                        TeamMember.volunteer_id == Volunteer.id,
                        TeamMember.team_id == bindparam("team_id", type_=BigInteger),
                    ),
                ),
            ),
        ),
    )
)


async def complete(change: Change) -> None:
    """完成: the service record of this round, with each participant's hours, credited to the ledgers
    (信用时长 and 积分) by the transition's one statement. Refused (422, nothing written): a participant who
    could not have served (``_PARTICIPANTS``), hours beyond the check-in span."""
    assert isinstance(change.body, CompleteBody)
    body, order = change.body, change.order
    ids = [p.volunteer_id for p in body.participants]
    if order.assignee_volunteer_id not in ids:
        raise InvalidInput("参与者须包含接单志愿者本人", volunteer_id=order.assignee_volunteer_id)
    params = {
        "volunteer_ids": ids,
        "assignee_id": order.assignee_volunteer_id,
        "unit_path": order.unit_path,
        "team_id": order.assignee_team_id,
    }
    found = {row["id"] for row in await _PARTICIPANTS.fetch(change.db, params)}
    if missing := sorted(set(ids) - found):
        raise InvalidInput(
            "参与者须为接单志愿者、所派服务队的成员或本单位及下级单位的在册志愿者", volunteer_ids=missing
        )
    ledger.check_service_hours(order, body.participants, change.now)
    rate = change.policy.points_per_hour
    record_id: int = change.read["new_record_id"]
    change.add_write(
        effect_rows.service_record_rows,
        {
            "record_id": record_id,
            "record_order_id": order.id,
            "record_round": order.round,
            "record_summary": body.summary,
            "record_served_count": body.served_count,
            "record_photos": list(body.photos),
            "record_actor_id": change.actor.user_id,
            "record_volunteer_ids": ids,
            "record_hours": [p.hours for p in body.participants],
            "record_points": [ledger.earned_points(p.hours, rate) for p in body.participants],
            "record_points_reasons": [f"服务 {p.hours} 小时 × {rate} 积分/小时" for p in body.participants],
            "record_kind_service": HoursKind.SERVICE.value,
            "record_kind_earned": PointsKind.EARNED.value,
            "record_now": change.now,
            "record_presence_proof": order.presence_proof,
            "record_verified": order.presence_proof is not None,
        },
    )
    order.completed_at = change.now
    change.event_payload = {
        "presence_proof": order.presence_proof,  # the hours are 未核验 without one
        "presence": presence.PROOF_LABELS[order.presence_proof],
        "record_id": record_id,
        "served_count": body.served_count,
        "participants": len(ids),
        "checked_in_at": order.checked_in_at.isoformat() if order.checked_in_at else None,  # the service window
    }


# ---- rating and rework ------------------------------------------------------------------------------


_SERVED_THE_ROUND = Prepared(
    select(ServiceParticipant.volunteer_id)
    .join(ServiceRecord, ServiceRecord.id == ServiceParticipant.record_id)
    .where(
        ServiceRecord.order_id == bindparam("order_id", type_=BigInteger),
        ServiceRecord.round == bindparam("round", type_=Integer),
        ServiceParticipant.volunteer_id == bindparam("volunteer_id", type_=BigInteger),
    )
)


async def rate(change: Change) -> None:
    """评单, marked 代评 when the proxy who placed the order rates it. Nobody credited for the round rates
    it (a volunteer who placed the order for a neighbour and then served it): 403."""
    assert isinstance(change.body, RateBody)
    order, body = change.order, change.body
    volunteer = change.actor.volunteer_id
    if volunteer is not None:
        params = {"order_id": order.id, "round": order.round, "volunteer_id": volunteer}
        if await _SERVED_THE_ROUND.fetchrow(change.db, params) is not None:
            raise Forbidden("参与服务的志愿者不能评价自己的服务", status=order.status)
    by_proxy = change.actor.user_id != order.resident_id
    change.add_write(
        effect_rows.rating_row,
        {
            "rating_order_id": order.id,
            "rating_round": order.round,
            "rating_stars": body.stars,
            "rating_tags": list(body.tags),
            "rating_comment": body.comment,
            "rating_by_id": change.actor.user_id,
            "rating_by_proxy": by_proxy,
        },
    )
    if body.stars <= FOLLOWUP_STARS:
        order.needs_followup = True  # 差评回访
    change.rating = OrderRating(stars=body.stars, by_proxy=by_proxy, rated_at=change.now)
    change.event_payload = {"stars": body.stars, "by_proxy": by_proxy}


async def reopen(change: Change) -> None:
    """返工: a new service round; the old record and rating stay on file."""
    order = change.order
    order.round += 1
    order.assignee_team_id = order.assignee_volunteer_id = None
    order.accepted_at = order.checked_in_at = order.completed_at = None
    order.presence_proof = None
    change.event_payload = {"round": order.round}
