"""常态化服务 (standing orders): requests and responses."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, model_validator

from app.schemas.common import Address, DateTime, Id, Latitude, Longitude, LongText, Name, Phone, Reason, Schema, Title

StandingStatus = Literal["active", "paused", "ended", "finished"]


class StandingOrderCreate(BaseModel):
    """A recurring need, e.g. "visit 王奶奶 every Tuesday at 9:00": the order every occurrence places (as
    ``POST /orders`` takes it) and its schedule."""

    item_id: Id | None = None
    title: Title | None = None
    description: LongText
    unit_id: Id
    address: Address
    contact_name: Name
    contact_phone: Phone
    beneficiaries: Annotated[int, Field(ge=1, le=100_000, strict=True)] = 1
    lat: Latitude | None = None
    lng: Longitude | None = None
    resident_id: Id | None = Field(default=None, description="代点单: the registered resident served (admins only)")
    rrule: Annotated[
        str,
        Field(
            max_length=500,
            description="RFC 5545 RRULE in Asia/Shanghai local time, e.g. FREQ=WEEKLY;BYDAY=TU;COUNT=52. "
            "At most daily; COUNT or UNTIL required; UNTIL in local time without Z.",
            examples=["FREQ=WEEKLY;BYDAY=TU;COUNT=52"],
        ),
    ]
    starts_at: DateTime = Field(description="the first occurrence's date and time of day (with time zone)")
    duration_minutes: Annotated[int, Field(ge=15, le=1440)] = 60
    lead_hours: Annotated[int, Field(ge=0, le=14 * 24)] | None = Field(
        default=None, description="place each occurrence this long before it (default: the deployment's)"
    )
    keep_volunteer: bool = Field(
        default=False,
        description="dispatch each occurrence to the volunteer who had the previous one, when they are free",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.item_id is None and not self.title:
            raise ValueError("item_id 与 title 至少填写一项")
        if (self.lat is None) != (self.lng is None):
            raise ValueError("lat 与 lng 须同时提供")
        if self.starts_at.tzinfo is None:
            raise ValueError("starts_at 须带时区, 例如 2026-12-08T09:00:00+08:00")
        return self


class StandingReason(BaseModel):
    reason: Reason | None = None


class StandingOrderOut(Schema):
    id: int
    status: StandingStatus
    resident_id: int | None
    placed_by_id: int
    unit_id: int
    item_id: int | None
    title: str | None
    rrule: str
    starts_at: datetime
    duration_minutes: int
    lead_minutes: int
    keep_volunteer: bool
    next_occurrence_at: datetime | None
    last_occurrence_at: datetime | None
    status_reason: str | None
    version: int
    created_at: datetime
    updated_at: datetime


class OccurrenceOut(Schema):
    occurrence_at: datetime
    order_id: int | None
    skipped: str | None = Field(description="why no order was placed for this occurrence")
    created_at: datetime
