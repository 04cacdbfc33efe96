from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ARRAY,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto import EncryptedString
from app.models.base import Base, CreatedAtMixin, IdMixin

STATUS_CHECK = (
    "status IN ('submitted','approved','dispatched','pooled','accepted','in_service',"
    "'completed','rated','closed','rejected','cancelled')"
)


class Order(IdMixin, CreatedAtMixin, Base):
    """服务订单: one resident need, from 点单 to 评单.

    ``status`` changes only through ``app.services.applying.apply``; ``unit_path`` copies
    the owning unit's materialized path so subtree scopes are one indexed predicate.
    """

    __tablename__ = "orders"
    # Every transition rewrites the row and so adds an entry to every index here (it changes indexed
    # columns: no HOT update): each index must serve a query. Lists are scoped by ``unit_path`` and
    # read newest first (``ix_orders_stats_cohort``, ``ix_orders_created_at_id``), a volunteer's and a
    # team's orders by assignee, the pool by ``ix_orders_pool``, the sweeper by ``ix_orders_due``; no
    # query looks orders up by status, unit id or category alone (units and categories are never
    # deleted, so their foreign keys need no index on this side either).
    __table_args__ = (
        CheckConstraint(STATUS_CHECK, name="status"),
        CheckConstraint("beneficiaries >= 1", name="beneficiaries"),
        Index("ix_orders_created_at_id", "created_at", "id"),
        Index("ix_orders_resident_id_created_at", "resident_id", "created_at"),
        Index("ix_orders_placed_by_id_created_at", "placed_by_id", "created_at"),
        Index("ix_orders_assignee_volunteer_id_status", "assignee_volunteer_id", "status"),
        Index("ix_orders_assignee_team_id_status", "assignee_team_id", "status"),
        Index("ix_orders_pool", "unit_path", postgresql_where=text("status = 'pooled'")),
        Index("ix_orders_due", "deadline_at", postgresql_where=text("deadline_at IS NOT NULL")),
        # 统计: a subtree's orders of a period, read index-only (app.services.stats).
        Index(
            "ix_orders_stats_cohort",
            "unit_path",
            "created_at",
            postgresql_ops={"unit_path": "text_pattern_ops"},
            postgresql_include=["id", "status", "category_id", "accepted_at", "completed_at"],
        ),
    )

    code: Mapped[str] = mapped_column(String(32), unique=True)
    # The resident served; null when staff order for someone with no account (电话/线下).
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # Who placed it: the resident, or a volunteer/admin ordering on their behalf (代点单).
    placed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("menu_items.id"))
    category_id: Mapped[int | None] = mapped_column(ForeignKey("menu_categories.id"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, server_default="")
    unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"))
    unit_path: Mapped[str] = mapped_column(String(400))
    address: Mapped[str] = mapped_column(String(300))
    lat: Mapped[float | None] = mapped_column(Float)
    lng: Mapped[float | None] = mapped_column(Float)
    contact_name: Mapped[str] = mapped_column(String(64))
    contact_phone: Mapped[str] = mapped_column(EncryptedString)  # encrypted at rest (app.crypto)
    preferred_start: Mapped[datetime | None]
    preferred_end: Mapped[datetime | None]
    beneficiaries: Mapped[int] = mapped_column(server_default=text("1"))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    assignee_team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    assignee_volunteer_id: Mapped[int | None] = mapped_column(ForeignKey("volunteers.id"))
    # Deadline of the current step (accept / pool); swept by the dispatch engine.
    deadline_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]
    checked_in_at: Mapped[datetime | None]
    # How presence at check-in was proven (code / gps / admin, app.services.presence); null: 未核验.
    presence_proof: Mapped[str | None] = mapped_column(String(8))
    completed_at: Mapped[datetime | None]
    # Service round: 1, then +1 on each 返工 (reopen). Records and ratings are per round.
    round: Mapped[int] = mapped_column(server_default=text("1"))
    # 回访: set when a rating of 1–2 stars arrives; cleared by staff after following up.
    needs_followup: Mapped[bool] = mapped_column(server_default=text("false"))
    version: Mapped[int] = mapped_column(server_default=text("1"))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


@dataclass(slots=True, kw_only=True)
class OrderRow:
    """An order as a transition reads and writes it (``app.services.applying``): the columns of
    ``orders``, as plain values, without the ORM's instance state (building an ``Order`` through its
    constructor cost a tenth of a transition's CPU). A test holds its fields to ``Order``'s columns."""

    id: int
    created_at: datetime
    code: str
    resident_id: int | None
    placed_by_id: int
    item_id: int | None
    category_id: int | None
    title: str
    description: str
    unit_id: int
    unit_path: str
    address: str
    lat: float | None
    lng: float | None
    contact_name: str
    contact_phone: str
    preferred_start: datetime | None
    preferred_end: datetime | None
    beneficiaries: int
    channel: str
    status: str
    assignee_team_id: int | None
    assignee_volunteer_id: int | None
    deadline_at: datetime | None
    accepted_at: datetime | None
    checked_in_at: datetime | None
    presence_proof: str | None
    completed_at: datetime | None
    round: int
    needs_followup: bool
    version: int
    updated_at: datetime


# What reads an order's values takes either: an ORM ``Order`` or a transition's ``OrderRow``.
OrderView = Order | OrderRow


class OrderEvent(IdMixin, CreatedAtMixin, Base):
    """订单时间线: append-only (a trigger refuses UPDATE and DELETE), written with each transition.
    ``order_id`` and ``actor_id`` name the order and the user without a foreign key (see
    ``app.models``)."""

    __tablename__ = "order_events"
    __table_args__ = (
        # 统计: the few events statistics count (上报, 超时, 取消), probed per order without the table.
        Index(
            "ix_order_events_counted",
            "order_id",
            "action",
            postgresql_include=["from_status"],
            postgresql_where=text("action IN ('escalate', 'expire', 'cancel')"),
        ),
    )

    order_id: Mapped[int] = mapped_column(index=True)
    action: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None]
    actor_role: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))


class ServiceRecord(IdMixin, CreatedAtMixin, Base):
    """服务记录: the completion report of one service round."""

    __tablename__ = "service_records"
    __table_args__ = (
        UniqueConstraint("order_id", "round"),
        # 统计: service events and people served per order, index-only.
        Index("ix_service_records_order_id_covering", "order_id", postgresql_include=["id", "served_count"]),
    )

    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    round: Mapped[int]
    summary: Mapped[str] = mapped_column(Text)
    served_count: Mapped[int]
    photos: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    submitted_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # The proof of presence of the round (the order's at completion); null: the hours are 未核验.
    presence_proof: Mapped[str | None] = mapped_column(String(8))


class ServiceParticipant(Base):
    """参与志愿者 and the hours each served (信用时长: recorded through an order)."""

    __tablename__ = "service_participants"
    __table_args__ = (CheckConstraint("hours > 0 AND hours <= 24", name="hours"),)

    record_id: Mapped[int] = mapped_column(ForeignKey("service_records.id", ondelete="CASCADE"), primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"), primary_key=True, index=True)
    hours: Mapped[Decimal] = mapped_column(Numeric(5, 1))


class Rating(IdMixin, CreatedAtMixin, Base):
    """评单: 1–5 stars, at most one per order and service round; ``by_proxy`` marks 代评."""

    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("order_id", "round"),
        CheckConstraint("stars BETWEEN 1 AND 5", name="stars"),
        # 统计: stars per order, index-only.
        Index("ix_ratings_order_id_covering", "order_id", postgresql_include=["stars"]),
    )

    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    round: Mapped[int]
    stars: Mapped[int] = mapped_column(SmallInteger)
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(32)), server_default="{}")
    comment: Mapped[str] = mapped_column(Text, server_default="")
    rated_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    by_proxy: Mapped[bool] = mapped_column(server_default=text("false"))
