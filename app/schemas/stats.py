"""统计 (center statistics for annual reports and 考核) as the admin API shows them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from app.domain import Status


class GroupBy(StrEnum):
    UNIT = "unit"  # the chosen unit's direct children, each with its whole subtree rolled up
    CATEGORY = "category"  # 服务菜单类别
    MONTH = "month"  # the month the order was placed, Asia/Shanghai


class Durations(BaseModel):
    """Seconds from placing an order to a later step, over the orders that reached it."""

    count: int = Field(description="orders that reached the step")
    median_seconds: float | None
    p90_seconds: float | None


class Figures(BaseModel):
    """One set of figures. Orders count when they were *placed* in the period; everything that happened
    to them (review, service, hours, ratings, escalations) is attributed to that period, so ratios stay
    ratios of the same orders. 荣誉时长 has no order: it counts when it was entered, for volunteers whose
    home unit is in scope."""

    placed: int = Field(description="点单: orders placed in the period")
    orders_by_status: dict[Status, int] = Field(description="current status of those orders")
    approved: int = Field(description="受理: orders that passed review (auto-approved included)")
    rejected: int
    cancelled: int
    completed: int = Field(description="办结: now completed, rated or closed")
    completion_rate: float | None = Field(description="completed / approved; null when nothing was approved")
    time_to_accept: Durations = Field(description="placed → accepted (接单)")
    time_to_complete: Durations = Field(description="placed → completed (完成)")
    service_events: int = Field(description="服务场次: service records")
    people_served: int = Field(description="服务人次: sum of served_count over service records")
    credit_hours: float = Field(description="信用时长: service + adjustment hours on these orders")
    credit_hours_unverified: float = Field(
        default=0.0, description="未核验: of ``credit_hours``, service hours of spans whose presence nobody proved"
    )
    honor_hours: float | None = Field(description="荣誉时长; null where it cannot be attributed (per category)")
    active_volunteers: int = Field(description="distinct volunteers who took part in a service record")
    ratings: int
    proxy_ratings: int = Field(
        description="代评: of ``ratings``, those given by whoever placed the order for the resident"
    )
    rating_average: float | None
    satisfaction_rate: float | None = Field(description="share of ratings with 4–5 stars; null with no ratings")
    escalations: int = Field(description="上报 events (staff or deadline)")
    expiries: int = Field(description="超时 events: dispatches and pools that ran out")


class ActivityFigures(BaseModel):
    """活动 beside orders: the subtree's published activities with a slot starting in the period."""

    activities: int
    slots: int
    places: int = Field(description="capacity summed over the slots")
    confirmed: int = Field(description="已录取 sign-ups")
    waitlisted: int = Field(description="候补 sign-ups")
    participants: int = Field(description="distinct volunteers credited with hours (checked out)")
    participations: int = Field(description="参与人次: check-outs")
    hours: float = Field(description="信用时长 from activity check-in → check-out")
    unverified_hours: float = Field(description="未核验: of ``hours``, spans not proven at both ends")


class StatsGroup(Figures):
    key: str = Field(description="unit id, category id (``none`` for custom orders) or ``YYYY-MM``")
    label: str
    unit_id: int | None = None
    category_id: int | None = None
    month: str | None = None


class StatsOut(BaseModel):
    unit_id: int
    unit_name: str
    period_from: datetime = Field(description="inclusive")
    period_to: datetime = Field(description="exclusive")
    timezone: Literal["Asia/Shanghai"] = Field(default="Asia/Shanghai", description="of dates and months")
    group_by: GroupBy | None
    overall: Figures
    activities: ActivityFigures | None = Field(default=None, description="活动 of the subtree in the period")
    groups: list[StatsGroup] = Field(description="empty without group_by")
