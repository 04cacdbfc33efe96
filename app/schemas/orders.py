"""Order requests and responses; which body each action takes is in its spec (``app.workflow.ACTIONS``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from app.domain import STATUS_LABELS, Action, ActionPath, Channel, Role, Status, TimelineNote
from app.schemas.common import (
    Address,
    DateTime,
    Id,
    Latitude,
    Longitude,
    LongText,
    Name,
    Phone,
    Reason,
    Schema,
    Tag,
    Title,
    Url,
    hours_schema,
)


class OrderCreate(BaseModel):
    """点单: a menu item or a custom need. Staff and volunteers may order for a resident (代点单)."""

    item_id: Id | None = None
    title: Title | None = None
    description: LongText
    unit_id: Id
    address: Address
    contact_name: Name
    contact_phone: Phone
    preferred_start: DateTime | None = None
    preferred_end: DateTime | None = None
    beneficiaries: Annotated[int, Field(ge=1, le=100_000, strict=True)] = 1
    channel: Channel | None = None
    lat: Latitude | None = None
    lng: Longitude | None = None
    resident_id: Id | None = Field(
        default=None, description="代点单: the registered resident served (volunteers and admins only)"
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.item_id is None and not self.title:
            raise ValueError("item_id 与 title 至少填写一项")
        if (self.lat is None) != (self.lng is None):
            raise ValueError("lat 与 lng 须同时提供")
        if self.preferred_start and self.preferred_end and self.preferred_end <= self.preferred_start:
            raise ValueError("preferred_end 必须晚于 preferred_start")
        for value in (self.preferred_start, self.preferred_end):
            if value is not None and value.tzinfo is None:
                raise ValueError("时间须带时区, 例如 2026-12-05T09:00:00+08:00")
        return self


class EmptyBody(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ReasonBody(BaseModel):
    reason: Reason


class DispatchBody(BaseModel):
    """指令性派单: exactly one of ``team_id`` / ``volunteer_id``."""

    team_id: Id | None = None
    volunteer_id: Id | None = None
    accept_within_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.team_id is None) == (self.volunteer_id is None):
            raise ValueError("team_id 与 volunteer_id 须且只能填写一项")
        return self


class PublishBody(BaseModel):
    accept_within_minutes: Annotated[int, Field(ge=1, le=30 * 24 * 60)] | None = None


class TransferBody(BaseModel):
    unit_id: Id
    reason: Reason | None = None


PresenceCode = Annotated[str, Field(pattern=r"^[0-9]{6}$", description="签到码: the six digits shown to the volunteer")]
PresenceQr = Annotated[str, Field(max_length=200, description="the scanned QR payload of a 签到码")]


class CheckInBody(BaseModel):
    """签到 (and an activity's 签退) with at most one proof of presence: ``code`` or ``qr`` (a one-time
    code), or ``lat``/``lng`` with ``accuracy_m`` (GPS). Empty, or a position without accuracy: no proof
    (未核验), allowed only where the unit's policy allows it. See README "Check-in proofs"."""

    lat: Latitude | None = None
    lng: Longitude | None = None
    accuracy_m: Annotated[
        float | None, Field(gt=0, le=100_000, description="the device's reported accuracy, metres")
    ] = None
    # Consumed, never stored: left out of the timeline (``exclude``).
    code: Annotated[PresenceCode | None, Field(exclude=True)] = None
    qr: Annotated[PresenceQr | None, Field(exclude=True)] = None

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.lat is None) != (self.lng is None):
            raise ValueError("lat 与 lng 须同时提供")
        if self.accuracy_m is not None and self.lat is None:
            raise ValueError("accuracy_m 须与 lat/lng 一同提供")
        if self.code is not None and self.qr is not None:
            raise ValueError("code 与 qr 只能提供一项")
        if self.accuracy_m is not None and (self.code is not None or self.qr is not None):
            raise ValueError("一次签到只能提供一种核验方式: 签到码或定位")
        return self


MAX_PARTICIPANTS = 20  # people credited for one service round (参与者): a visit, not a 活动


class Participant(BaseModel):
    volunteer_id: Id
    hours: Annotated[
        Decimal, Field(gt=0, le=24, max_digits=4, decimal_places=1), hours_schema(exclusiveMinimum=0, maximum=24)
    ]


class CompleteBody(BaseModel):
    """服务记录: summary, people served, hours per participant, photos."""

    summary: Annotated[LongText, Field(min_length=1)]
    served_count: Annotated[int, Field(ge=0, le=100_000, strict=True)]
    participants: Annotated[
        list[Participant],
        Field(min_length=1, max_length=MAX_PARTICIPANTS, description=f"at most {MAX_PARTICIPANTS} per service record"),
    ]
    photos: Annotated[list[Url], Field(max_length=20)] = []

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        ids = [p.volunteer_id for p in self.participants]
        if len(set(ids)) != len(ids):
            raise ValueError("participants 中志愿者重复")
        return self


class RateBody(BaseModel):
    stars: Annotated[int, Field(ge=1, le=5, strict=True)]  # strict: `true` is not one star
    comment: LongText = ""
    tags: Annotated[list[Tag], Field(max_length=10)] = []


def _url_segment(value: Any) -> Any:
    # Answers stored for Idempotency-Key replays before actions were listed as URL segments say ``check_in``.
    return value.replace("_", "-") if isinstance(value, str) else value


AllowedAction = Annotated[ActionPath, BeforeValidator(_url_segment)]


class OrderRating(Schema):
    """评单: the rating of the order's current round."""

    stars: int
    by_proxy: bool = Field(description="代评: given by whoever placed the order for the resident, not the resident")
    rated_at: datetime


class OrderOut(Schema):
    id: int
    code: str
    status: Status
    status_label: str
    version: int
    round: int
    unit_id: int
    item_id: int | None
    category_id: int | None
    title: str
    description: str
    address: str
    lat: float | None
    lng: float | None
    contact_name: str
    contact_phone: str = Field(description="masked (138****5678) unless the caller may see it")
    preferred_start: datetime | None
    preferred_end: datetime | None
    beneficiaries: int
    channel: Channel
    resident_id: int | None
    placed_by_id: int
    by_proxy: bool = Field(description="代点单: placed by someone other than the resident served")
    assignee_team_id: int | None
    assignee_volunteer_id: int | None
    deadline_at: datetime | None
    checked_in_at: datetime | None
    presence_proof: str | None = Field(
        default=None, description="签到核验: code / gps / admin; null while unproven (未核验) or not checked in"
    )
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    allowed_actions: list[AllowedAction] = Field(
        description="actions the caller may take now, as URL segments: POST /orders/{id}/{segment}"
    )
    # Defaulted so responses stored for Idempotency-Key replays before this field existed still load.
    needs_followup: bool = Field(default=False, description="差评待回访: a 1–2 star rating not yet followed up")
    rating: OrderRating | None = Field(
        default=None,
        description="the current round's rating, in GET /orders/{id} and in the answer to rate; lists leave it out",
    )


class EventOut(Schema):
    id: int
    action: Action | TimelineNote = Field(
        description="a state-machine action (``check_in``), or adjust_hours / followup (the status stays)"
    )
    from_status: Status | None
    to_status: Status
    actor_id: int | None
    actor_role: Role
    reason: str | None
    payload: dict[str, Any]
    created_at: datetime


def status_label(status: Status) -> str:
    return STATUS_LABELS[status]
