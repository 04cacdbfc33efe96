"""签到核验: proving that a volunteer is where the service is, one implementation for orders and
activities (``app.services.effects.check_in`` / ``confirm_presence``, ``app.services.activity_presence``).

Three proofs; the policy in force at the unit (``app.services.policies``) says which it accepts and
whether a check-in with none (未核验) is allowed at all:

- ``code``: a one-time code (签到码) shown to the resident (an order) or by the organiser (an activity
  slot): six digits, HMAC-SHA256 of a server secret, the subject (``order:<id>`` / ``slot:<id>``) and a
  time window of ``presence_code_seconds``. A code is valid in its window and the next one, so it
  works for one to two windows after it is shown. The QR code carries the same code with its subject
  and window (``QR_PREFIX``). A code is used once: ``presence_code_uses`` has one row per (use,
  window) and its primary key refuses a second, whatever runs at the same time.
- ``gps``: the device's position and its reported accuracy (metres). Refused when the accuracy is
  worse than the policy's ``presence_max_accuracy_m``; accepted only when **distance + accuracy ≤
  radius**, i.e. the whole circle the device may be in lies within the radius around the place (the
  conservative rule: a poor fix near the edge is refused rather than trusted).
- ``admin``: staff confirm presence with a reason (an audited action of their own).

A position without ``accuracy_m`` is recorded as reported but proves nothing.

Guessing: six digits are 10⁶ codes, so a caller may submit at most ``presence_code_attempts`` codes
per subject in ``CODE_ATTEMPT_SECONDS`` (``count_code_attempt``, counted in PostgreSQL like logins, so
every instance shares the count and a refused check-in does not undo it); past it, 429.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import BigInteger, ColumnElement, String, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from app.db import transaction
from app.errors import PresenceCodeUsed, PresenceRefused
from app.models import PresenceCodeUse
from app.models.base import table_of
from app.services.policies import Policy
from app.services.throttle import count_attempt


class Proof(StrEnum):
    CODE = "code"  # 签到码 / 扫码
    GPS = "gps"  # 定位
    ADMIN = "admin"  # 管理员确认


PROOF_LABELS: dict[str | None, str] = {
    Proof.CODE.value: "签到码",
    Proof.GPS.value: "定位",
    Proof.ADMIN.value: "管理员确认",
    None: "未核验",
}
ALL_PROOFS = frozenset(p.value for p in Proof)
QR_PREFIX = "SIDAN-PRESENCE:1"
DIGITS = 6
VALID_WINDOWS = 2  # a code's own window and the next one
EXPIRED_LOOKBACK = 60  # windows back in which a matching code is reported as expired, not as wrong
EARTH_RADIUS_M = 6_371_000.0


@dataclass(slots=True)
class _Keys:
    secret: bytes = hashlib.sha256(b"sidan-presence-dev").digest()
    window_seconds: int = 120
    attempts: int = 5


_KEYS = _Keys()  # set once by ``configure`` when the app starts (``app.main.create_app``)


def configure(token_secret: str, window_seconds: int, attempts: int = 5) -> None:
    """Derive the code key from the service's secret: every instance with the same secret issues and
    accepts the same codes. ``attempts``: codes a caller may submit per subject in
    ``CODE_ATTEMPT_SECONDS``."""
    _KEYS.secret = hmac.new(token_secret.encode(), b"sidan-presence-code", hashlib.sha256).digest()
    _KEYS.window_seconds = window_seconds
    _KEYS.attempts = attempts


CODE_ATTEMPT_SECONDS: Final = 15 * 60


async def count_code_attempt(session: AsyncSession, subject: str, user_id: int, now: datetime | None = None) -> None:
    """Count one submitted 签到码 (typed or scanned) of ``user_id`` for ``subject``, in a transaction of
    its own on ``session`` (committed before the code is checked, so a refusal does not undo it); 429
    past ``attempts`` in ``CODE_ATTEMPT_SECONDS``."""
    async with transaction(session):  # adopts the request's open transaction, commits either way
        key = f"presence-code:{subject}:{user_id}"
        await count_attempt(session, key, _KEYS.attempts, CODE_ATTEMPT_SECONDS, now or datetime.now(UTC))


def window_of(now: datetime) -> int:
    return int(now.timestamp()) // _KEYS.window_seconds


def code_for(subject: str, window: int) -> str:
    digest = hmac.new(_KEYS.secret, f"{subject}|{window}".encode(), hashlib.sha256).digest()
    return str(int.from_bytes(digest[:8], "big") % 10**DIGITS).zfill(DIGITS)


def order_subject(order_id: int) -> str:
    return f"order:{order_id}"


def slot_subject(slot_id: int) -> str:
    return f"slot:{slot_id}"


@dataclass(frozen=True, slots=True)
class IssuedCode:
    code: str
    qr: str
    window: int
    expires_at: datetime
    valid_seconds: int


def issue(subject: str, now: datetime) -> IssuedCode:
    """The code of ``subject`` for the current window (the same on every instance and request)."""
    window = window_of(now)
    code = code_for(subject, window)
    expires = datetime.fromtimestamp((window + VALID_WINDOWS) * _KEYS.window_seconds, UTC)
    return IssuedCode(
        code=code,
        qr=f"{QR_PREFIX}:{subject}:{window}:{code}",
        window=window,
        expires_at=expires,
        valid_seconds=max(int((expires - now).total_seconds()), 0),
    )


def _refused(reason: str, message: str, **details: Any) -> PresenceRefused:
    return PresenceRefused(message, reason=reason, **details)


_QR = re.compile(rf"{re.escape(QR_PREFIX)}:([a-z]+:[0-9]{{1,19}}):([0-9]{{1,12}}):([0-9]{{{DIGITS}}})")


def _window_from_qr(subject: str, qr: str) -> tuple[int, str]:
    found = _QR.fullmatch(qr)  # ASCII digits only: no other digit of Unicode's reaches int() or the HMAC
    if found is None:
        raise _refused("code_invalid", "二维码无法识别")
    if found[1] != subject:
        raise _refused("code_invalid", "签到码不属于此订单或活动")
    return int(found[2]), found[3]


def match_code(subject: str, code: str | None, qr: str | None, now: datetime) -> int:
    """The window of a valid code of ``subject`` (typed or scanned); 422 if it is not one (wrong,
    another subject's, or expired)."""
    current = window_of(now)
    if qr is not None:
        window, code = _window_from_qr(subject, qr)
        candidates = [window] if window <= current else []
    else:
        candidates = list(range(current, current - EXPIRED_LOOKBACK, -1))
    assert code is not None
    for window in candidates:
        if hmac.compare_digest(code_for(subject, window), code):
            if window <= current - VALID_WINDOWS:
                raise _refused("code_expired", "签到码已过期, 请让对方刷新后重新出示")
            return window
    raise _refused("code_invalid", "签到码不正确")


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def check_position(
    policy: Policy, place: tuple[float | None, float | None], lat: float, lng: float, accuracy_m: float
) -> dict[str, Any]:
    """422 unless the reported position proves presence at ``place`` (see the module docstring)."""
    if place[0] is None or place[1] is None:
        raise _refused("no_coordinates", "服务地点没有坐标, 无法用定位签到")
    if accuracy_m > policy.presence_max_accuracy_m:
        raise _refused(
            "accuracy_too_poor",
            f"定位精度不足 ({accuracy_m:.0f} 米, 最多 {policy.presence_max_accuracy_m} 米), 请到开阔处重新定位",
            accuracy_m=accuracy_m,
            max_accuracy_m=policy.presence_max_accuracy_m,
        )
    distance = distance_m(place[0], place[1], lat, lng)
    if distance + accuracy_m > policy.presence_radius_m:
        raise _refused(
            "out_of_range",
            f"不在服务地点 {policy.presence_radius_m} 米范围内",
            distance_m=round(distance),
            accuracy_m=accuracy_m,
            radius_m=policy.presence_radius_m,
        )
    return {"distance_m": round(distance), "accuracy_m": accuracy_m}


def accepts(policy: Policy, proof: Proof | None) -> None:
    """422 unless the unit's policy accepts ``proof`` (``None``: a check-in with none)."""
    if proof is None:
        if not policy.allow_unproven:
            accepted = sorted(policy.presence_proofs)
            raise _refused("proof_required", "本单位要求签到核验: 请提供签到码或定位", accepted=accepted)
    elif proof.value not in policy.presence_proofs:
        raise _refused(
            "proof_not_accepted",
            f"本单位不接受「{PROOF_LABELS[proof.value]}」签到",
            proof=proof.value,
            accepted=sorted(policy.presence_proofs),
        )


@dataclass(slots=True)
class Presence:
    """What a check-in proved: the proof (``None``: 未核验), the code's window to mark used, and what
    the timeline shows."""

    proof: Proof | None
    code_window: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        proof = None if self.proof is None else self.proof.value
        return {"presence_proof": proof, "presence": PROOF_LABELS[proof]} | self.details


def prove(
    policy: Policy,
    subject: str,
    place: tuple[float | None, float | None],
    body: Any,
    now: datetime,
) -> Presence:
    """The proof a volunteer's check-in (or check-out) body carries, verified: ``body`` has ``code``,
    ``qr``, ``lat``, ``lng`` and ``accuracy_m`` (``CheckInBody``). Refused (422) as the module says."""
    if body.code is not None or body.qr is not None:
        accepts(policy, Proof.CODE)
        window = match_code(subject, body.code, body.qr, now)
        return Presence(Proof.CODE, window, {"code_window": window})
    if body.accuracy_m is not None:
        accepts(policy, Proof.GPS)
        return Presence(Proof.GPS, None, check_position(policy, place, body.lat, body.lng, body.accuracy_m))
    accepts(policy, None)
    return Presence(None)


# ---- the used-codes record ---------------------------------------------------------------------------

CODE_USES_KEY = "pk_presence_code_uses"


def code_use_row(written: ColumnElement[bool]) -> Insert:
    """A transition's part (``effects.Change.add_write``): the code marked used, only if the order is
    written; a second use of it fails the whole statement on the primary key (``CODE_USES_KEY``)."""
    uses = table_of(PresenceCodeUse)
    return insert(uses).from_select(
        ["subject", "window", "used_at"],
        select(
            bindparam("code_subject", type_=String),
            bindparam("code_window", type_=BigInteger),
            bindparam("code_used_at", type_=uses.c.used_at.type),
        ).where(written),
    )


def code_use_params(subject: str, window: int, now: datetime) -> dict[str, Any]:
    return {"code_subject": subject, "code_window": window, "code_used_at": now}


def code_used() -> PresenceCodeUsed:
    return PresenceCodeUsed("签到码已使用过, 请让对方刷新后重新出示", reason="code_used")


def is_code_reuse(exc: BaseException) -> bool:
    """Whether a database error is the used-codes key refusing a second use."""
    return getattr(exc, "constraint_name", None) == CODE_USES_KEY
