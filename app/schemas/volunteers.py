from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field


class StarLevel(BaseModel):
    stars: int = Field(description="0–5 (星级), from certified service hours")
    next_stars: int | None
    hours_to_next: Decimal | None


class VolunteerMe(BaseModel):
    id: int
    user_id: int
    real_name: str
    phone: str
    home_unit_id: int
    skills: list[str]
    status: str
    team_ids: list[int]
    service_hours: Decimal = Field(description="信用时长: hours recorded through completed orders")
    service_count: int = Field(description="completed service records the volunteer took part in")
    points: int = Field(description="积分 balance")
    star_level: StarLevel
