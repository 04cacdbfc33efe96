"""签到码 as the API shows it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class PresenceCodeOut(BaseModel):
    code: str = Field(description="six digits the volunteer types in")
    qr: str = Field(description="the QR payload the volunteer app may scan instead (submitted as ``qr``)")
    expires_at: datetime = Field(description="after this the code is refused as expired")
    valid_seconds: int
