"""志愿服务时长证明: requests and the public verification answer."""

from __future__ import annotations

from datetime import date, datetime
from typing import Self

from pydantic import BaseModel, Field, model_validator

from app.schemas.common import Hours, Schema

EARLIEST_PERIOD = date(2000, 1, 1)
MAX_PERIOD_DAYS = 10 * 366


class CertificateRequest(BaseModel):
    """The period (Asia/Shanghai dates, both included) whose 信用时长 the certificate states."""

    period_start: date
    period_end: date

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.period_start < EARLIEST_PERIOD:
            raise ValueError(f"period_start 不能早于 {EARLIEST_PERIOD}")
        if self.period_end < self.period_start:
            raise ValueError("period_end 不能早于 period_start")
        if (self.period_end - self.period_start).days > MAX_PERIOD_DAYS:
            raise ValueError("证明期间最长 10 年")
        return self


class CertificateOut(Schema):
    """An issued certificate as its holder sees it (the code is only on the PDF)."""

    id: int
    period_start: date
    period_end: date
    hours: Hours
    star_level: int
    unit_name: str
    created_at: datetime


class CertificateCheck(BaseModel):
    """What anyone holding a verification code learns: no more than the certificate needs to be trusted."""

    valid: bool = True
    masked_name: str = Field(description="the volunteer's name, all but the first character masked")
    hours: Hours = Field(description="信用时长 in the period")
    unit_name: str = Field(description="the issuing unit")
    period_start: date
    period_end: date
    issued_on: date
