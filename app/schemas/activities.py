"""活动招募: activities, their slots and sign-ups as the API shows them."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, Field, model_validator

from app.schemas.common import Address, DateTime, Hours, Id, Latitude, Longitude, LongText, Schema, Tag, Title
from app.schemas.directory import Patch


class ActivityKind(StrEnum):
    LECTURE = "lecture"  # 宣讲
    CLINIC = "clinic"  # 义诊
    PERFORMANCE = "performance"  # 文艺演出
    OTHER = "other"  # 其他


KIND_LABELS = {
    ActivityKind.LECTURE: "宣讲",
    ActivityKind.CLINIC: "义诊",
    ActivityKind.PERFORMANCE: "文艺演出",
    ActivityKind.OTHER: "其他",
}


class SignupStatus(StrEnum):
    CONFIRMED = "confirmed"  # 已录取
    WAITLISTED = "waitlisted"  # 候补
    CANCELLED = "cancelled"  # 已取消


MAX_SLOT_HOURS = 24
MAX_CAPACITY = 10_000


class SlotIn(BaseModel):
    starts_at: DateTime
    ends_at: DateTime
    capacity: Annotated[int, Field(ge=1, le=MAX_CAPACITY, strict=True)]

    @model_validator(mode="after")
    def _span(self) -> Self:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at 必须晚于 starts_at")
        if self.ends_at - self.starts_at > timedelta(hours=MAX_SLOT_HOURS):
            raise ValueError(f"一个时段最长 {MAX_SLOT_HOURS} 小时")
        return self


class ActivityCreate(BaseModel):
    """发布活动: at a 所 or 站 (or a 实践点/基地) of the caller's subtree; volunteers whose home unit lies
    under it may sign up, if they have every required skill."""

    unit_id: Id
    kind: ActivityKind
    title: Title
    description: LongText = ""
    address: Address
    lat: Latitude | None = None
    lng: Longitude | None = None
    required_skills: Annotated[list[Tag], Field(max_length=10)] = []
    slots: Annotated[list[SlotIn], Field(min_length=1, max_length=50)]

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.lat is None) != (self.lng is None):
            raise ValueError("lat 与 lng 须同时提供")
        return self


class ActivityUpdate(Patch):
    """修改活动: the fields given change, the others stay. ``lat`` and ``lng`` come together (both
    ``null``: no place to check GPS against). Volunteers signed up hear of a changed place."""

    nullable_fields = frozenset({"lat", "lng"})

    title: Title | None = None
    description: LongText | None = None
    address: Address | None = None
    lat: Latitude | None = None
    lng: Longitude | None = None
    required_skills: Annotated[list[Tag], Field(max_length=10)] | None = None

    @model_validator(mode="after")
    def _something_and_pairs(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("至少修改一项")
        if ("lat" in self.model_fields_set) != ("lng" in self.model_fields_set) or (self.lat is None) != (
            self.lng is None
        ):
            raise ValueError("lat 与 lng 须同时提供")
        return self


class SlotUpdate(Patch):
    """修改时段: its capacity (never below those confirmed; more room confirms the waitlist in order) and
    its times (``starts_at`` with ``ends_at``; not once someone has checked in)."""

    capacity: Annotated[int, Field(ge=1, le=MAX_CAPACITY, strict=True)] | None = None
    starts_at: DateTime | None = None
    ends_at: DateTime | None = None

    @model_validator(mode="after")
    def _something_and_span(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("至少修改一项")
        if (self.starts_at is None) != (self.ends_at is None):
            raise ValueError("starts_at 与 ends_at 须同时提供")
        if self.starts_at is not None and self.ends_at is not None:
            SlotIn(starts_at=self.starts_at, ends_at=self.ends_at, capacity=1)  # the same span rules
        return self


class SlotOut(Schema):
    id: int
    starts_at: datetime
    ends_at: datetime
    capacity: int
    confirmed: int = Field(description="已录取 sign-ups")
    waitlisted: int = Field(description="候补 sign-ups")


class ActivityOut(Schema):
    id: int
    unit_id: int
    kind: ActivityKind
    kind_label: str
    title: str
    description: str
    address: str
    lat: float | None
    lng: float | None
    required_skills: list[str]
    status: str
    created_at: datetime
    cancelled_at: datetime | None = Field(description="取消: when staff cancelled it (status cancelled)")
    cancel_reason: str | None
    slots: list[SlotOut]


class SignupOut(Schema):
    id: int
    slot_id: int
    activity_id: int
    volunteer_id: int
    status: SignupStatus
    waitlist_position: int | None = Field(description="1 = next to be promoted; null unless 候补")
    checked_in_at: datetime | None
    checked_in_proof: str | None = Field(description="code / gps / admin; null: 未核验 (or not checked in)")
    checked_out_at: datetime | None
    checked_out_proof: str | None
    hours: Hours | None = Field(description="信用时长 credited at check-out")
    verified: bool | None = Field(description="hours proven at check-in and check-out; false: 未核验")
    created_at: datetime
