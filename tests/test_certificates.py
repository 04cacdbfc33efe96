"""志愿服务时长证明: the PDF says who, how many 信用时长, which star, which unit and the code (read back with
pypdf); anyone checks the code without logging in and learns only the masked name, hours, unit and
period; unknown codes are 404; guessing is throttled per address; codes are stored hashed only."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI
from pypdf import PdfReader
from sqlalchemy import select

from app.config import Settings
from app.domain import Status
from app.models import HourCertificate, HoursEntry
from tests.helpers import count
from tests.world import World

TODAY = datetime.now(ZoneInfo("Asia/Shanghai")).date()  # periods are local dates


def period(start: date | None = None, end: date | None = None) -> dict[str, str]:
    return {
        "period_start": (start or TODAY - timedelta(days=30)).isoformat(),
        "period_end": (end or TODAY).isoformat(),
    }


async def issue(world: World, user: str = "v11a", **body: Any) -> httpx.Response:
    return await world.client.post("/volunteer/certificates", json=body or period(), headers=world.h(user))


def pdf_text(content: bytes) -> str:
    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


async def served(world: World, times: int = 2) -> None:
    """v11a completes ``times`` orders at 0.5 h each (信用时长)."""
    for _ in range(times):
        await world.order_in(Status.COMPLETED)


async def test_the_pdf_states_name_hours_star_unit_and_code(world: World, app: FastAPI) -> None:
    await served(world)
    honor = {"hours": "50", "reason": "防汛值守"}  # 荣誉时长: never on the certificate
    path = f"/admin/volunteers/{world.volunteers['v11a']}/honor-hours"
    assert (await world.client.post(path, json=honor, headers=world.h("zhan11_admin"))).status_code == 201

    response = await issue(world)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    code = response.headers["x-verification-code"]
    text = pdf_text(response.content)
    for expected in ("志愿服务时长证明", "志愿者v11a", "1.0 小时", "测试zhan11", code, "0 星"):
        assert expected in text, (expected, text)
    assert "50" not in text.replace(code, "")

    # Anyone, without a token, checks the code: masked name, hours, unit, period; nothing else.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test/api/v1") as anonymous:
        checked = await anonymous.get("/certificates/verify", params={"code": code})
        assert checked.status_code == 200, checked.text
        data = checked.json()
        assert data == {
            "valid": True,
            "masked_name": "志******",
            "hours": 1.0,
            "unit_name": "测试zhan11",
            "period_start": period()["period_start"],
            "period_end": period()["period_end"],
            "issued_on": data["issued_on"],
        }
        assert "v11a" not in checked.text
        # As typed by a person: lower case, no dashes.
        loose = await anonymous.get("/certificates/verify", params={"code": code.replace("-", " ").lower()})
        assert loose.status_code == 200
        unknown = await anonymous.get("/certificates/verify", params={"code": "ABCD-EFGH-JKLM-NPQR"})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
        assert (await anonymous.get("/certificates/verify", params={"code": "x" * 65})).status_code == 422

    # Only a hash of the code is kept.
    async with app.state.sessionmaker() as session:
        [stored] = (await session.scalars(select(HourCertificate))).all()
    assert stored.code_hash == hashlib.sha256(code.replace("-", "").encode()).hexdigest()
    assert code not in repr(stored.__dict__) and code.replace("-", "") not in stored.code_hash
    listed = await world.client.get("/volunteer/certificates", headers=world.h("v11a"))
    assert [c["hours"] for c in listed.json()] == [1.0] and "code" not in listed.text.lower()


async def test_hours_are_those_of_the_period_only(world: World, app: FastAPI) -> None:
    await served(world, 2)
    async with app.state.sessionmaker() as session, session.begin():  # and half an hour 40 days ago
        long_ago = datetime.now(UTC) - timedelta(days=40)
        session.add(
            HoursEntry(volunteer_id=world.volunteers["v11a"], kind="service", hours=Decimal("0.5"), created_at=long_ago)
        )
    recent = await issue(world)
    assert "1.0 小时" in pdf_text(recent.content)
    older = await issue(world, **period(TODAY - timedelta(days=60), TODAY - timedelta(days=31)))
    assert "0.5 小时" in pdf_text(older.content)
    nothing = await issue(world, **period(date(2020, 1, 1), date(2020, 12, 31)))
    assert "共计 0.0 小时" in pdf_text(nothing.content)
    mine = (await world.client.get("/volunteer/me/hours", headers=world.h("v11a"))).json()["totals"]
    async with app.state.sessionmaker() as session, session.begin():  # 未核验 hours are stated apart
        session.add(
            HoursEntry(volunteer_id=world.volunteers["v11a"], kind="service", hours=Decimal("2"), verified=False)
        )
    stated = pdf_text((await issue(world)).content)
    assert "共计 3.0 小时" in stated
    assert f"其中未核验 (到场未经签到证明) {mine['unverified'] + 2:.1f} 小时" in stated


async def test_only_volunteers_with_a_sane_period(world: World, app: FastAPI) -> None:
    for user in ("r1", "zhan11_admin"):
        assert (await issue(world, user)).status_code == 403
    assert (await world.client.post("/volunteer/certificates", json=period())).status_code == 401
    for bad in (
        period(TODAY, TODAY - timedelta(days=1)),  # ends before it starts
        period(TODAY - timedelta(days=3), TODAY + timedelta(days=1)),  # ends in the future
        period(date(1999, 1, 1), date(1999, 12, 31)),
        period(date(2001, 1, 1), date(2020, 1, 1)),  # longer than 10 years
        {"period_start": "yesterday", "period_end": TODAY.isoformat()},
        {},
    ):
        response = await world.client.post("/volunteer/certificates", json=bad, headers=world.h("v11a"))
        assert response.status_code == 422, bad
    assert await count(app, HourCertificate) == 0


async def test_guessing_codes_is_throttled_per_address(world: World, app: FastAPI, settings: Settings) -> None:
    response = await issue(world)
    code = response.headers["x-verification-code"]
    limit = settings.certificate_checks_per_address
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test/api/v1") as anonymous:
        for i in range(limit):
            guess = await anonymous.get("/certificates/verify", params={"code": f"GUESS{i:011d}"})
            assert guess.status_code == 404
        # Past the limit even the right code is refused for a while: guesses cannot be told apart.
        throttled = await anonymous.get("/certificates/verify", params={"code": code})
        assert throttled.status_code == 429
        assert throttled.json()["error"]["details"]["retry_after_seconds"] > 0
