"""未满足需求 (unmet demand) as the admin API shows it: ``GET /admin/stats/unmet``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class UnmetCell(BaseModel):
    """One unit (a direct child of the chosen unit with its subtree, or the unit itself: 本级) and one
    menu category (``category_id`` null: 自定义需求)."""

    unit_id: int
    unit_label: str
    category_id: int | None
    category_label: str
    placed: int = Field(description="点单: orders placed in the period")
    unmet: int = Field(description="orders nobody took: the four counts below added")
    expired: int = Field(description="still open, never accepted, after at least one 超时 (dispatch or pool ran out)")
    escalated_to_top: int = Field(
        description="still open, never accepted, escalated (上报) to a 中心 or above: the top of 站→所→中心"
    )
    cancelled_before_accept: int = Field(description="cancelled before anyone accepted")
    rejected: int = Field(description="驳回 at review")
    unmet_rate: float | None = Field(description="unmet / placed; null when nothing was placed")
    wait_median_seconds: float | None = Field(
        description="unmet orders: from placing to rejection / cancellation, or to now while still open"
    )
    wait_p90_seconds: float | None
    active_volunteers: int = Field(
        description="active volunteers whose home unit is in this unit's subtree and who serve this category "
        "(themselves or through a team); 0 for 自定义需求"
    )
    orders_per_volunteer: float | None = Field(description="placed / active_volunteers; null with no volunteer")


class UnmetOut(BaseModel):
    unit_id: int
    unit_name: str
    period_from: datetime = Field(description="inclusive")
    period_to: datetime = Field(description="exclusive")
    timezone: str = "Asia/Shanghai"
    placed: int
    unmet: int
    cells: list[UnmetCell] = Field(description="every (unit, category) with an order placed, most unmet first")
    arrivals: list[list[int]] = Field(description="7×24: orders placed per weekday (0 = Monday) and hour, local time")
    acceptances: list[list[int]] = Field(description="7×24: of those orders, acceptances per weekday and hour")
