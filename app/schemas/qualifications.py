"""技能与资质: what menu items require and what volunteers hold."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, field_validator

from app.schemas.common import Schema, Tag

MAX_REQUIREMENTS = 10
CertificateNumber = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


def _distinct(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


class ItemRequirements(BaseModel):
    """What serving a menu item takes: skills (matched against ``volunteers.skills``, they raise the
    score) and qualifications (kinds, e.g. 急救证: without a valid one a volunteer is not offered it)."""

    required_skills: Annotated[list[Tag], Field(max_length=MAX_REQUIREMENTS)] = []
    required_qualifications: Annotated[list[Tag], Field(max_length=MAX_REQUIREMENTS)] = []

    @field_validator("required_skills", "required_qualifications")
    @classmethod
    def _dedupe(cls, values: list[str]) -> list[str]:
        return _distinct(values)


class QualificationIn(BaseModel):
    """A volunteer's qualification as the admin checked it: kind, certificate number, expiry (none:
    does not expire)."""

    kind: Tag = Field(examples=["急救证"])
    number: CertificateNumber
    expires_on: date | None = None

    @field_validator("expires_on")
    @classmethod
    def _plausible(cls, value: date | None) -> date | None:
        if value is not None and not date(1990, 1, 1) <= value <= date(2200, 1, 1):
            raise ValueError("expires_on 须在 1990-01-01 与 2200-01-01 之间")
        return value


class QualificationOut(Schema):
    volunteer_id: int
    kind: str
    number: str
    expires_on: date | None
    verified_by_id: int
    verified_at: datetime
