from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field

from app.schemas.common import Hours
from app.schemas.directory import VolunteerStatus


class StarLevel(BaseModel):
    """星级 of the national registry, from 信用时长 only (荣誉时长 never counts toward a star)."""

    stars: int = Field(description="0–5 (星级), from certified service hours")
    next_stars: int | None
    hours_to_next: Hours | None
    current_threshold: Hours = Field(default=Decimal(0), description="hours the current level starts at")
    next_threshold: Hours | None = Field(default=None, description="hours the next level starts at")
    progress: float = Field(default=0.0, description="0–1: how far from the current level to the next (1 at 5★)")


class VolunteerMe(BaseModel):
    id: int
    user_id: int
    real_name: str
    phone: str
    home_unit_id: int
    skills: list[str]
    status: VolunteerStatus
    team_ids: list[int]
    service_hours: Hours = Field(
        description="信用时长: hours recorded through completed orders, with admins' audited corrections"
    )
    honor_hours: Hours = Field(default=Decimal(0), description="荣誉时长: entered by admins; kept apart")
    service_count: int = Field(description="completed service records the volunteer took part in")
    points: int = Field(description="积分 balance")
    star_level: StarLevel
    rating_avg: float | None = Field(default=None, description="over ratings of the rounds the volunteer served")
    rating_count: int = 0
