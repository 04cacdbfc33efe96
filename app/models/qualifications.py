"""资质: what a volunteer holds (急救证, 心理咨询师证 …), recorded and verified by an admin."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin, IdMixin


class VolunteerQualification(IdMixin, CreatedAtMixin, Base):
    """One qualification of a volunteer: its kind (e.g. 急救证), certificate number and expiry date
    (``None``: does not expire). Recorded by an admin in scope, who thereby verified it; one per kind
    (a renewal replaces it)."""

    __tablename__ = "volunteer_qualifications"
    __table_args__ = (UniqueConstraint("volunteer_id", "kind", name="uq_volunteer_qualifications_kind"),)

    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"))
    kind: Mapped[str] = mapped_column(String(32))
    number: Mapped[str] = mapped_column(String(64))
    expires_on: Mapped[date | None]
    verified_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    verified_at: Mapped[datetime]
