"""The staff console in a real browser: Playwright driving Debian's ``chromium`` against ``sidan serve
--demo`` on 127.0.0.1 (its own database, the demo county).

No browser is ever downloaded: without ``chromium`` (or the ``playwright`` package) these tests skip
with the reason, unless ``SIDAN_REQUIRE_BROWSER=1`` (CI), where that is a failure. Screenshots of every
page at 1366×768 go to ``$SIDAN_ARTIFACTS`` (default ``tests/artifacts/``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import make_url

from app.demo import DEMO_PASSWORD
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("SIDAN_ARTIFACTS") or ROOT / "tests" / "artifacts")
VIEWPORT = {"width": 1366, "height": 768}
PAGE_ERRORS: list[str] = []  # JavaScript errors on any page: a test fails on the first one
STARTUP_TIMEOUT = 120.0


def _chromium() -> str | None:
    for candidate in ("chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _browser_or_skip() -> str:
    """Debian's chromium, or skip (fail under ``SIDAN_REQUIRE_BROWSER=1``) saying what is missing."""
    missing = None
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing = "the playwright package is not installed (pip install -e '.[dev]')"
    executable = _chromium()
    if missing is None and executable is None:
        missing = "chromium is not installed (apt-get install -y chromium); no browser is downloaded"
    if missing is not None or executable is None:
        reason = f"browser tests need a browser: {missing}"
        if os.environ.get("SIDAN_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (SIDAN_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    return executable


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def chromium_path() -> str:
    return _browser_or_skip()


@pytest.fixture(scope="module")
async def demo_database(server_url: str, chromium_path: str) -> AsyncIterator[str]:
    name = f"sidan_console_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(_dsn(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield make_url(_dsn(server_url)).set(database=name).render_as_string(hide_password=False)
    admin = await asyncpg.connect(_dsn(server_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def server(demo_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``sidan serve --demo`` on a free loopback port: migrates, loads the demo county, serves."""
    port = free_port()
    log = tmp_path_factory.mktemp("console") / "serve.log"
    env = {k: v for k, v in os.environ.items() if k != "SIDAN_DATABASE_URL"}
    env |= {"DATABASE_URL": demo_database, "PYTHONUNBUFFERED": "1", "SIDAN_LOG_LEVEL": "WARNING"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--demo", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    srv = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"sidan serve exited:\n{log.read_text(errors='replace')}")
            try:
                if httpx.get(f"{srv.base_url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"sidan serve not healthy:\n{log.read_text(errors='replace')}")
            time.sleep(0.3)
        yield srv
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium_path, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


async def signed_in_page(browser: Any, server: Server, username: str) -> Any:
    """A fresh browser context (its own cookies) signed in through the login form."""
    context = await browser.new_context(viewport=VIEWPORT, locale="zh-CN", accept_downloads=True)
    page = await context.new_page()
    page.on("pageerror", lambda error: PAGE_ERRORS.append(str(error)))
    await page.goto(f"{server.base_url}/console/")
    assert "/console/login" in page.url  # no session yet: the login page
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", DEMO_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{server.base_url}/console/")
    return page


async def shot(page: Any, name: str) -> None:
    assert not PAGE_ERRORS, PAGE_ERRORS
    await asyncio.to_thread(ARTIFACTS.mkdir, parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


async def api_get(server: Server, username: str, path: str, **params: Any) -> Any:
    """``GET /api/v1{path}`` as ``username`` (logged in through the API): what the console must agree with."""
    async with httpx.AsyncClient(base_url=f"{server.base_url}/api/v1", timeout=10) as http:
        login = await http.post("/auth/login", json={"username": username, "password": DEMO_PASSWORD})
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        response = await http.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()


async def test_zhan_admin_approves_dispatches_and_sees_the_order_move(browser: Any, server: Server) -> None:
    page = await signed_in_page(browser, server, "zhan_admin")
    await shot(page, "01-desk-zhan_admin")
    await page.goto(f"{server.base_url}/console/orders?status=submitted")
    await shot(page, "02-board-submitted")
    first = page.locator("#board-rows tr[data-order]").first
    order_id = await first.get_attribute("data-order")
    code = (await first.locator("td").first.inner_text()).strip()
    await first.locator("td a").first.click()
    await page.wait_for_url(f"**/console/orders/{order_id}")
    await shot(page, "03-order-submitted")
    await page.click("form.act-approve button[type=submit]")
    await page.wait_for_url(f"**/console/orders/{order_id}?done=approve")
    assert (await page.inner_text("#order-status")).strip() == "待派单"
    await shot(page, "04-order-approved-candidates")
    # The top candidate is the first row, checked by default, with its score parts.
    candidates = await api_get(server, "zhan_admin", f"/admin/orders/{order_id}/candidates")
    ranked = candidates["volunteers"] or candidates["teams"]
    top = ranked[0]
    radio = page.locator("form.act-dispatch input[name=target]").first
    assert await radio.get_attribute("value") == f"{top['kind']}:{top['id']}"
    assert await radio.is_checked()
    await page.click("form.act-dispatch button[type=submit]")
    await page.wait_for_url(f"**/console/orders/{order_id}?done=dispatch")
    assert (await page.inner_text("#order-status")).strip() == "待接单"
    await shot(page, "05-order-dispatched")
    await page.goto(f"{server.base_url}/console/orders?status=dispatched")
    assert await page.locator(f"#board-rows tr[data-order='{order_id}']").count() == 1
    await shot(page, "06-board-dispatched")
    await page.goto(f"{server.base_url}/console/orders?status=submitted")
    assert await page.locator(f"#board-rows tr[data-order='{order_id}']").count() == 0
    api = await api_get(server, "zhan_admin", f"/orders/{order_id}")
    assert api["status"] == "dispatched" and api["code"] == code
    assert api["assignee_volunteer_id" if top["kind"] == "volunteer" else "assignee_team_id"] == top["id"]
    for path, name in (
        ("/console/people", "07-people"),
        ("/console/market", "08-market"),
        ("/console/settings", "09-settings"),
    ):
        await page.goto(f"{server.base_url}{path}")
        await shot(page, name)


CANVAS_INK = """(el) => {
  const canvas = el.querySelector('canvas');
  if (!canvas) { return 0; }
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let ink = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] > 0 && (data[i] < 235 || data[i + 1] < 235 || data[i + 2] < 235)) { ink++; }
  }
  return ink;
}"""


async def test_center_admin_sees_charts_and_downloads_a_csv_with_a_bom(browser: Any, server: Server) -> None:
    page = await signed_in_page(browser, server, "center_admin")
    await page.goto(f"{server.base_url}/console/stats")
    await page.wait_for_selector("body[data-charts-ready]", state="attached")
    charts = page.locator("[data-chart]")
    assert await charts.count() == 6
    for i in range(await charts.count()):
        chart = charts.nth(i)
        ink = await chart.evaluate(CANVAS_INK)
        assert ink > 200, f"chart {await chart.get_attribute('data-chart')} is blank ({ink} inked pixels)"
    blank = await page.evaluate(
        "() => document.querySelector('canvas').toDataURL() === document.createElement('canvas').toDataURL()"
    )
    assert not blank
    await shot(page, "10-stats-center_admin")
    async with page.expect_download() as info:
        await page.click("#export-orders")
    download = await info.value
    content = await asyncio.to_thread(Path(await download.path()).read_bytes)
    assert content.startswith(b"\xef\xbb\xbf"), content[:20]
    assert len(content.decode("utf-8-sig").splitlines()) > 1  # the header and the county's orders
    await page.goto(f"{server.base_url}/console/unmet")
    await page.wait_for_selector("body[data-charts-ready]", state="attached")
    heat = page.locator("[data-chart]")
    for i in range(await heat.count()):
        assert await heat.nth(i).evaluate(CANVAS_INK) > 200
    await shot(page, "11-unmet-center_admin")
    await page.goto(f"{server.base_url}/console/")
    await shot(page, "12-desk-center_admin")
    await page.goto(f"{server.base_url}/console/orders?status=all")
    await shot(page, "13-board-all-center_admin")


async def test_a_station_admin_typing_another_stations_order_gets_not_found(browser: Any, server: Server) -> None:
    me = await api_get(server, "zhan_admin", "/me")
    orders = (await api_get(server, "center_admin", "/admin/orders", limit=200))["items"]
    theirs = next(o for o in orders if o["unit_id"] != me["unit_id"])
    page = await signed_in_page(browser, server, "zhan_admin")
    response = await page.goto(f"{server.base_url}/console/orders/{theirs['id']}")
    assert response is not None and response.status == 404
    assert "不存在" in await page.inner_text("main")
    assert theirs["code"] not in await page.content()
    await shot(page, "14-not-found")


async def test_a_form_posted_without_its_csrf_token_is_refused(browser: Any, server: Server) -> None:
    page = await signed_in_page(browser, server, "zhan_admin")
    await page.goto(f"{server.base_url}/console/orders?status=submitted")
    first = page.locator("#board-rows tr[data-order]").first
    order_id = await first.get_attribute("data-order")
    await page.goto(f"{server.base_url}/console/orders/{order_id}")
    # Strip the token from the form and from htmx's headers, as a forged cross-site form would lack it.
    await page.evaluate(
        """() => { document.body.removeAttribute('hx-headers');
                  document.querySelectorAll('form.act-approve input[name=csrf_token]').forEach(e => e.remove()); }"""
    )
    async with page.expect_response(f"**/console/orders/{order_id}/actions/approve") as info:
        await page.click("form.act-approve button[type=submit]")
    refused = await info.value
    assert refused.status == 403
    await page.wait_for_load_state()
    assert "CSRF" in await page.inner_text("main")
    await shot(page, "15-csrf-refused")
    api = await api_get(server, "zhan_admin", f"/orders/{order_id}")
    assert api["status"] == "submitted"


async def test_logout_in_the_browser_ends_the_session(browser: Any, server: Server) -> None:
    page = await signed_in_page(browser, server, "suo_admin")
    cookies = await page.context.cookies()
    session = next(c for c in cookies if c["name"] == "sidan_console")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    await page.click("header.top button")
    await page.wait_for_url("**/console/login")
    await shot(page, "16-login")
    replay = await asyncio.to_thread(
        httpx.get, f"{server.base_url}/console/", cookies={"sidan_console": session["value"]}, follow_redirects=False
    )
    assert replay.status_code == 303
