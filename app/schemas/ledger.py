"""Hours (服务时长), points (积分), the 爱心超市 and volunteers' records as the API shows them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, model_validator

from app.schemas.common import Hours, Id, LongText, Page, Reason, Schema, Title, hours_schema
from app.schemas.directory import Patch
from app.schemas.volunteers import StarLevel


class HoursKind(StrEnum):
    SERVICE = "service"  # 信用时长: credited by a completed order
    ADJUSTMENT = "adjustment"  # an admin's audited correction of an order's hours (still 信用)
    HONOR = "honor"  # 荣誉时长: entered by an admin, no order


class PointsKind(StrEnum):
    EARNED = "earned"  # from service hours (and their corrections)
    BONUS = "bonus"  # an admin's award or deduction, with a reason
    REDEMPTION = "redemption"  # 爱心超市 debit
    REFUND = "refund"  # a cancelled redemption


RedemptionStatus = Literal["pending", "collected", "cancelled"]

# --- requests -------------------------------------------------------------------------------------


class HoursAdjustIn(BaseModel):
    """时长更正: ``hours`` is the participant's corrected total for the order (not a difference)."""

    volunteer_id: Id
    hours: Annotated[Decimal, Field(ge=0, le=999, max_digits=4, decimal_places=1), hours_schema(minimum=0, maximum=999)]
    reason: Reason


class HonorHoursIn(BaseModel):
    """荣誉时长: positive to award, negative to withdraw an earlier award (never below zero in total)."""

    hours: Annotated[
        Decimal, Field(ge=-9999, le=9999, max_digits=5, decimal_places=1), hours_schema(minimum=-9999, maximum=9999)
    ]
    reason: Reason

    @model_validator(mode="after")
    def _not_zero(self) -> Self:
        if self.hours == 0:
            raise ValueError("hours 不能为 0")
        return self


class PointsBonusIn(BaseModel):
    """积分奖扣: positive awards, negative deducts (refused when the balance would go below zero)."""

    delta: Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
    reason: Reason

    @model_validator(mode="after")
    def _not_zero(self) -> Self:
        if self.delta == 0:
            raise ValueError("delta 不能为 0")
        return self


class FollowupIn(BaseModel):
    """回访记录: what the resident said when staff called back."""

    note: Reason


GoodsName = Annotated[Title, Field(max_length=100)]
GoodsDescription = Annotated[LongText, Field(max_length=1000)]
PointsPrice = Annotated[int, Field(gt=0, le=1_000_000)]
Stock = Annotated[int, Field(ge=0, le=1_000_000)]


class GoodsCreate(BaseModel):
    unit_id: Id
    name: GoodsName
    description: GoodsDescription = ""
    points_price: PointsPrice
    stock: Stock = 0
    is_active: bool = True


class GoodsUpdate(Patch):
    name: GoodsName | None = None
    description: GoodsDescription | None = None
    points_price: PointsPrice | None = None
    stock: Stock | None = Field(default=None, description="the stock on hand now (replaces the count)")
    is_active: bool | None = Field(default=None, description="false: 下架, volunteers no longer see it")


class RedeemIn(BaseModel):
    goods_id: Id
    quantity: Annotated[int, Field(ge=1, le=10)] = 1


class RedemptionCancelIn(BaseModel):
    reason: Reason


# --- responses ------------------------------------------------------------------------------------


class HoursTotals(BaseModel):
    """Hours by kind. 信用时长 (``credit``) = service + adjustment; 荣誉时长 (``honor``) is never added to it."""

    service: Hours
    adjustment: Hours
    honor: Hours
    credit: Hours = Field(description="信用时长: service + adjustment; star levels use only this")
    unverified: Hours = Field(
        default=Decimal(0),
        description="未核验: of ``service``, hours of spans whose presence nobody proved (no check-in proof)",
    )


class HoursEntryOut(Schema):
    id: int
    volunteer_id: int
    kind: HoursKind
    hours: Hours
    order_id: int | None
    record_id: int | None
    activity_signup_id: int | None = Field(default=None, description="活动: the sign-up these hours are for")
    verified: bool = Field(default=True, description="false: 未核验 (the span's presence was not proven)")
    reason: str | None
    actor_id: int | None
    created_at: datetime


class PointsEntryOut(Schema):
    id: int
    volunteer_id: int
    kind: PointsKind
    delta: int
    reason: str | None
    order_id: int | None
    redemption_id: int | None
    actor_id: int | None
    created_at: datetime


class HoursPage(Page[HoursEntryOut]):
    totals: HoursTotals = Field(description="all of the volunteer's hours, whatever the filter")


class PointsPage(Page[PointsEntryOut]):
    balance: int


class HoursAdjustmentOut(BaseModel):
    order_id: int
    volunteer_id: int
    previous_hours: Hours
    hours: Hours
    delta: Hours
    points_delta: int = Field(description="积分 moved with the hours (a debit is capped at the balance)")
    entry: HoursEntryOut


class VolunteerHoursOut(BaseModel):
    volunteer_id: int
    entry: HoursEntryOut
    totals: HoursTotals


class VolunteerPointsOut(BaseModel):
    volunteer_id: int
    entry: PointsEntryOut
    balance: int


class ServiceRecordOut(BaseModel):
    """One service round the volunteer took part in."""

    record_id: int
    order_id: int
    order_code: str
    title: str
    round: int
    hours: Hours = Field(description="the hours recorded for the volunteer in this round")
    order_hours: Hours = Field(description="the volunteer's 信用时长 on the order now, corrections included")
    served_count: int
    summary: str
    completed_at: datetime
    presence_proof: str | None = Field(
        default=None, description="签到核验 of the round: code / gps / admin; null: the hours are 未核验"
    )


class VolunteerSummary(BaseModel):
    volunteer_id: int
    real_name: str
    home_unit_id: int
    hours: HoursTotals
    points_balance: int
    star_level: StarLevel
    rating_avg: float | None = Field(description="over ratings of the service rounds the volunteer took part in")
    rating_count: int
    orders_served: int
    service_count: int = Field(description="service records (rounds) the volunteer took part in")


class TeamSummary(BaseModel):
    """A team's figures are those of its current members; an order or rating shared by several counts once."""

    team_id: int
    name: str
    unit_id: int
    member_count: int
    hours: HoursTotals
    points_balance: int
    rating_avg: float | None
    rating_count: int
    orders_served: int


class GoodsOut(Schema):
    id: int
    unit_id: int
    name: str
    description: str
    points_price: int
    stock: int
    is_active: bool
    created_at: datetime


class RedemptionOut(BaseModel):
    id: int
    goods_id: int
    goods_name: str
    unit_id: int = Field(description="the unit whose 爱心超市 hands the goods out")
    volunteer_id: int
    volunteer_name: str
    quantity: int
    points: int
    status: RedemptionStatus
    handled_by_id: int | None
    handled_at: datetime | None
    created_at: datetime
