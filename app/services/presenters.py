"""Orders as a given caller may see them."""

from __future__ import annotations

from app.auth import Actor
from app.domain import STATUS_LABELS, Status, action_paths
from app.models import OrderView
from app.schemas.common import mask_phone
from app.schemas.orders import OrderOut, OrderRating
from app.services.guards import QUALIFIED_ACTIONS, allowed_actions, may_see_phone
from app.services.privacy import logs_phone_read


def present_order(
    order: OrderView,
    actor: Actor,
    *,
    answering_action: bool = False,
    rating: OrderRating | None = None,
    unqualified: bool = False,
) -> OrderOut:
    """``order`` as ``actor`` may see it. ``answering_action``: the answer to something the caller did
    to the order, where staff see the contact phone masked: an action needs no phone, and every
    unmasked read of it by staff is logged (``privacy.logs_phone_read``), reading the order
    (``GET /orders/{id}``, ``GET /admin/orders``) shows it. ``unqualified``: the volunteer lacks a
    qualification the order's menu item requires (``offers.lacking``): grab and accept, which
    would refuse them, are not offered."""
    offered = allowed_actions(actor, order)
    if unqualified:
        offered = [action for action in offered if action not in QUALIFIED_ACTIONS]
    status = Status(order.status)
    shown = may_see_phone(actor, order) and not (answering_action and logs_phone_read(actor, order))
    return OrderOut(
        id=order.id,
        code=order.code,
        status=status,
        status_label=STATUS_LABELS[status],
        version=order.version,
        round=order.round,
        unit_id=order.unit_id,
        item_id=order.item_id,
        category_id=order.category_id,
        title=order.title,
        description=order.description,
        address=order.address,
        lat=order.lat,
        lng=order.lng,
        contact_name=order.contact_name,
        contact_phone=order.contact_phone if shown else mask_phone(order.contact_phone),
        preferred_start=order.preferred_start,
        preferred_end=order.preferred_end,
        beneficiaries=order.beneficiaries,
        channel=order.channel,
        resident_id=order.resident_id,
        placed_by_id=order.placed_by_id,
        by_proxy=order.placed_by_id != order.resident_id,
        assignee_team_id=order.assignee_team_id,
        assignee_volunteer_id=order.assignee_volunteer_id,
        deadline_at=order.deadline_at,
        checked_in_at=order.checked_in_at,
        presence_proof=order.presence_proof,
        completed_at=order.completed_at,
        created_at=order.created_at,
        updated_at=order.updated_at,
        allowed_actions=action_paths(offered),
        needs_followup=order.needs_followup,
        rating=rating,
    )
