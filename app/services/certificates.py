"""志愿服务时长证明: a PDF certificate of a volunteer's 信用时长 in a period, checkable by anyone.

The certificate states the volunteer's name, their 信用时长 in the period (service hours recorded
through completed orders plus audited corrections; never 荣誉时长), their star level, the issuing unit
(their home 站) and a verification code. The code is 80 random bits (16 characters of an alphabet with
no 0/O or 1/I); only its SHA-256 is stored, so the database holds no usable code. ``GET
/certificates/verify?code=`` answers anyone with the masked name, the hours, the unit, the period and
the issue date; checks are counted per client address (``app.services.throttle``), so guessing is
throttled across every instance. The PDF's CJK text is set in ReportLab's built-in Adobe CID font
STSong-Light: nothing to download or embed.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.config import Settings
from app.db import transaction
from app.errors import InvalidInput, NotFound
from app.models import HourCertificate, HoursEntry, OrgUnit, Volunteer
from app.schemas.certificates import CertificateCheck, CertificateOut, CertificateRequest
from app.schemas.ledger import HoursKind
from app.services.ledger import hours_totals
from app.services.throttle import count_attempt
from app.services.volunteering import star_level

LOCAL = ZoneInfo("Asia/Shanghai")
FONT = "STSong-Light"
_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # 32 symbols: 5 bits each
_CODE_LENGTH = 16
ISSUES_PER_HOUR = 20  # certificates one volunteer may have issued in an hour
VERIFY_PATH = "/api/v1/certificates/verify"
CREDIT_KINDS = (HoursKind.SERVICE.value, HoursKind.ADJUSTMENT.value)

pdfmetrics.registerFont(UnicodeCIDFont(FONT))  # once, at import: renders run in worker threads


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    pdf: bytes
    code: str
    certificate: CertificateOut


def new_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, _CODE_LENGTH, 4))


def normalized(code: str) -> str:
    """A code as typed: case, spaces and dashes do not matter."""
    return "".join(ch for ch in code.upper() if ch not in " -")


def code_hash(code: str) -> str:
    return hashlib.sha256(normalized(code).encode()).hexdigest()


def mask_name(name: str) -> str:
    """王小明 → 王**: the first character only."""
    name = name.strip()
    return name[:1] + "*" * max(len(name) - 1, 1) if name else "*"


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=LOCAL)


async def issue_certificate(
    session: AsyncSession, settings: Settings, actor: Actor, body: CertificateRequest, now: datetime | None = None
) -> IssuedCertificate:
    """Issue the caller's certificate for the period: its record (with the code's hash) and the PDF."""
    now = now or datetime.now(UTC)
    today = now.astimezone(LOCAL).date()
    if body.period_end > today:
        raise InvalidInput("period_end 不能晚于今天", field="period_end")
    if actor.volunteer_id is None:
        raise NotFound("志愿者档案不存在")
    code = new_code()
    async with transaction(session):
        key = f"certificate:issue:{actor.volunteer_id}"
        await count_attempt(session, key, ISSUES_PER_HOUR, 3600, now)
        row = (
            await session.execute(
                select(Volunteer.real_name, OrgUnit.id, OrgUnit.name)
                .join(OrgUnit, OrgUnit.id == Volunteer.home_unit_id)
                .where(Volunteer.id == actor.volunteer_id)
            )
        ).one()
        real_name, unit_id, unit_name = row
        sums = (
            await session.execute(
                select(
                    func.coalesce(func.sum(HoursEntry.hours), 0),
                    func.coalesce(func.sum(HoursEntry.hours).filter(HoursEntry.verified.is_(False)), 0),
                ).where(
                    HoursEntry.volunteer_id == actor.volunteer_id,
                    HoursEntry.kind.in_(CREDIT_KINDS),
                    HoursEntry.created_at >= _day_start(body.period_start),
                    HoursEntry.created_at < _day_start(body.period_end + timedelta(days=1)),
                )
            )
        ).one()
        hours, unverified = (Decimal(value).quantize(Decimal("0.1")) for value in sums)
        total = (await hours_totals(session, [actor.volunteer_id])).credit.quantize(Decimal("0.1"))
        stars = star_level(total).stars
        record = HourCertificate(
            volunteer_id=actor.volunteer_id,
            unit_id=unit_id,
            unit_name=unit_name,
            masked_name=mask_name(real_name),
            period_start=body.period_start,
            period_end=body.period_end,
            hours=hours,
            star_level=stars,
            code_hash=code_hash(code),
            created_at=now,
        )
        session.add(record)
        await session.flush()
        certificate = CertificateOut.model_validate(record)
    page = _Page(real_name, hours, unverified, total, stars, unit_name, body, today, code, settings.public_base_url)
    pdf = await asyncio.to_thread(page.render)
    return IssuedCertificate(pdf=pdf, code=code, certificate=certificate)


async def my_certificates(session: AsyncSession, actor: Actor) -> list[CertificateOut]:
    async with transaction(session):
        rows = await session.scalars(
            select(HourCertificate)
            .where(HourCertificate.volunteer_id == actor.volunteer_id)
            .order_by(HourCertificate.id.desc())
            .limit(100)
        )
        return [CertificateOut.model_validate(row) for row in rows]


async def verify(
    session: AsyncSession, settings: Settings, code: str, address: str, now: datetime | None = None
) -> CertificateCheck:
    """The public check of a verification code: 404 for an unknown code, 429 past the per-address limit.
    Every check counts, found or not (committed before the 404)."""
    now = now or datetime.now(UTC)
    async with transaction(session):
        await count_attempt(
            session,
            f"certificate:check:{address}",
            settings.certificate_checks_per_address,
            settings.certificate_check_window_seconds,
            now,
        )
        found = await session.scalar(select(HourCertificate).where(HourCertificate.code_hash == code_hash(code)))
        check = (
            None
            if found is None
            else CertificateCheck(
                masked_name=found.masked_name,
                hours=found.hours,
                unit_name=found.unit_name,
                period_start=found.period_start,
                period_end=found.period_end,
                issued_on=found.created_at.astimezone(LOCAL).date(),
            )
        )
    if check is None:
        raise NotFound("验证码不存在")
    return check


@dataclass(frozen=True, slots=True)
class _Page:
    real_name: str
    hours: Decimal
    unverified: Decimal  # 未核验: of ``hours``, spans whose presence nobody proved
    total: Decimal
    stars: int
    unit_name: str
    period: CertificateRequest
    issued_on: date
    code: str
    base_url: str

    def render(self) -> bytes:
        """The certificate as a one-page A4 PDF."""
        buffer = io.BytesIO()
        pdf = canvas.Canvas(buffer, pagesize=A4, pageCompression=1)
        pdf.setTitle("志愿服务时长证明")
        pdf.setAuthor(self.unit_name)
        width, height = A4
        pdf.setFont(FONT, 24)
        pdf.drawCentredString(width / 2, height - 110, "志愿服务时长证明")
        lines = [
            f"兹证明志愿者 {self.real_name}",
            f"于 {self.period.period_start:%Y年%m月%d日} 至 {self.period.period_end:%Y年%m月%d日} 期间,",
            f"信用时长 (服务记录时长) 共计 {self.hours} 小时,",
            f"其中未核验 (到场未经签到证明) {self.unverified} 小时。",
            f"志愿者星级: {self.stars} 星 (累计信用时长 {self.total} 小时)",
            "",
            f"出具单位: {self.unit_name}",
            f"出具日期: {self.issued_on:%Y年%m月%d日}",
            f"验证码: {self.code}",
            "",
            "信用时长含服务记录与核定调整的时长, 不含荣誉时长; 未核验时长已单独注明。",
            "真伪查询:",
        ]
        pdf.setFont(FONT, 13)
        y = height - 170
        for line in lines:
            pdf.drawString(72, y, line)
            y -= 26
        pdf.setFont(FONT, 9)
        pdf.drawString(72, y, f"{self.base_url.rstrip('/')}{VERIFY_PATH}?code={self.code}")
        pdf.showPage()
        pdf.save()
        return buffer.getvalue()
