"""志愿服务时长证明: certificates of 信用时长 issued to volunteers, checkable by a public code."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin, IdMixin


class HourCertificate(IdMixin, CreatedAtMixin, Base):
    """One issued certificate, as printed. Only the SHA-256 of its verification code is stored: the
    code itself is on the PDF alone, so a database leak yields no valid codes."""

    __tablename__ = "hour_certificates"
    __table_args__ = (Index("ix_hour_certificates_volunteer_id", "volunteer_id"),)

    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"))  # the issuing unit (the home 站)
    unit_name: Mapped[str] = mapped_column(String(100))
    masked_name: Mapped[str] = mapped_column(String(64))
    period_start: Mapped[date]
    period_end: Mapped[date]
    hours: Mapped[Decimal] = mapped_column(Numeric(9, 1))
    star_level: Mapped[int]
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
