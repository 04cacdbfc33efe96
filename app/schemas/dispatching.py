from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from app.services.policies import DispatchMode


class PolicyIn(BaseModel):
    """派单策略 of one unit; it applies to the unit and every unit under it without a policy of its own."""

    review_hours: Annotated[int, Field(ge=1, le=24 * 30)] = 24
    accept_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 120
    pool_hours: Annotated[int, Field(ge=1, le=24 * 30)] = 24
    auto_close_days: Annotated[int, Field(ge=1, le=365)] = 7
    dispatch_mode: DispatchMode = DispatchMode.MANUAL
    points_per_hour: Annotated[int, Field(ge=0, le=1000)] = 10
    presence_proofs: Annotated[
        set[Literal["code", "gps", "admin"]], Field(description="签到核验: proofs of presence the unit accepts")
    ] = {"code", "gps", "admin"}
    allow_unproven: bool = Field(default=True, description="whether a check-in without proof (未核验) is allowed")
    presence_radius_m: Annotated[int, Field(ge=10, le=10_000, description="定位签到: radius around the place")] = 300
    presence_max_accuracy_m: Annotated[
        int, Field(ge=5, le=5_000, description="定位签到: the worst reported accuracy accepted")
    ] = 100


class PolicyOut(PolicyIn):
    unit_id: int
    inherited_from_unit_id: int | None = Field(description="the unit whose policy this is; null = defaults")


class CandidateOut(BaseModel):
    kind: Literal["volunteer", "team"]
    id: int
    name: str
    unit_id: int
    score: float
    parts: dict[str, float] = Field(description="distance, category, load, reliability, rating, skill")
    details: dict[str, Any]


class CandidatesOut(BaseModel):
    order_id: int
    volunteers: list[CandidateOut]
    teams: list[CandidateOut]
    scoring: str = Field(description="how the score is made")
