"""End to end: ``sidan serve --demo`` as a real process on the embedded PostgreSQL, driven over HTTP.

Nothing is shared with the other tests: the CLI starts its own pgserver in a temporary
``SIDAN_DATA_DIR``, migrates it, loads the demo county and serves it with uvicorn. The whole 四单
loop then runs with the demo accounts, and SIGTERM must stop both the service and its database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.demo import DEMO_PASSWORD
from tests.helpers import free_port, process_alive

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path
    data_dir: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def postmaster_pid(self) -> int | None:
        """The embedded PostgreSQL's pid while it runs (PostgreSQL deletes the file on shutdown)."""
        pid_file = self.data_dir / "pgdata" / "postmaster.pid"
        try:
            return int(pid_file.read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None


def _wait_until_healthy(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"sidan serve exited with {server.process.returncode}:\n{server.output()}")
        try:
            if httpx.get(f"{server.base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    pytest.fail(f"sidan serve not healthy after {STARTUP_TIMEOUT:.0f}s:\n{server.output()}")


def _stop(server: Server) -> int:
    """SIGTERM, then wait; SIGKILL only if the service ignores it. Returns the exit code."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)
        pytest.fail(f"sidan serve ignored SIGTERM for {STOP_TIMEOUT:.0f}s:\n{server.output()}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SIDAN_DATABASE_URL"}}
    env |= {"SIDAN_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    env.pop("XDG_RUNTIME_DIR", None)  # as on a server or in a container: the first run must still be quiet
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--demo", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    srv = Server(process, f"http://127.0.0.1:{port}", log, tmp_path / "data")
    postmaster: int | None = None
    try:
        _wait_until_healthy(srv)
        postmaster = srv.postmaster_pid()
        yield srv
    finally:
        _stop(srv)
        # Never leave the embedded database behind, whatever the test concluded.
        postmaster = postmaster or srv.postmaster_pid()
        if postmaster is not None and srv.postmaster_pid() == postmaster and process_alive(postmaster):
            os.kill(postmaster, signal.SIGTERM)


class Api:
    """The demo accounts over real HTTP."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.headers: dict[str, dict[str, str]] = {}

    def login(self, username: str) -> dict[str, Any]:
        response = self.http.post("/auth/login", json={"username": username, "password": DEMO_PASSWORD})
        assert response.status_code == 200, f"{username}: {response.text}"
        self.headers[username] = {"Authorization": f"Bearer {response.json()['access_token']}"}
        me: dict[str, Any] = self.http.get("/me", headers=self.headers[username]).json()
        return me

    def act(self, username: str, order_id: int, action: str, body: dict[str, Any] | None = None) -> str:
        response = self.http.post(f"/orders/{order_id}/{action}", json=body or {}, headers=self.headers[username])
        assert response.status_code == 200, f"{action} by {username}: {response.text}"
        status: str = response.json()["status"]
        return status


def test_serve_demo_runs_the_whole_loop_and_stops_on_sigterm(server: Server) -> None:
    output = server.output()
    assert f"{server.base_url}/docs" in output, output
    assert "demo data loaded" in output, output
    # A newcomer's first screen: no platformdirs warning, no initdb / pg_ctl transcript.
    assert "XDG_RUNTIME_DIR" not in output and "initdb" not in output and "pg_ctl" not in output, output
    root = httpx.get(f"{server.base_url}/", timeout=10)
    assert root.status_code == 307 and root.headers["location"] == "/docs"
    assert httpx.get(f"{server.base_url}/docs", timeout=10).status_code == 200
    assert httpx.get(f"{server.base_url}/readyz", timeout=10).status_code == 200

    with httpx.Client(base_url=f"{server.base_url}/api/v1", timeout=15) as http:
        api = Api(http)
        resident = api.login("resident01")
        station = resident["unit_id"]
        zhan = api.login("zhan_admin")
        assert zhan["unit_id"] == station, "resident01 lives at the 站 zhan_admin runs"
        volunteer_id = api.login("volunteer01")["volunteer_id"]
        assert volunteer_id is not None

        menu = http.get("/menu", params={"unit_id": station}).json()
        items = [item for section in menu["sections"] for item in section["items"] if not item["auto_approve"]]
        assert items, menu
        placed = http.post(
            "/orders",
            json={
                "item_id": items[0]["id"],
                "description": "老伴腿脚不便，想请志愿者上门帮忙",
                "unit_id": station,
                "address": "幸福里小区5号楼2单元301室",
                "contact_name": "王秀兰",
                "contact_phone": "13812345678",
            },
            headers=api.headers["resident01"] | {"Idempotency-Key": "e2e-order-1"},
        )
        assert placed.status_code == 201, placed.text
        order = placed.json()
        assert order["status"] == "submitted"
        oid = order["id"]

        assert api.act("zhan_admin", oid, "approve") == "approved"
        assert api.act("zhan_admin", oid, "dispatch", {"volunteer_id": volunteer_id}) == "dispatched"
        assert api.act("volunteer01", oid, "accept") == "accepted"
        assert api.act("volunteer01", oid, "check-in") == "in_service"
        completion = {
            "summary": "上门服务完成，老人情况良好",
            "served_count": 1,
            "participants": [{"volunteer_id": volunteer_id, "hours": 0.5}],  # ≤ the check-in span
        }
        assert api.act("volunteer01", oid, "complete", completion) == "completed"
        assert api.act("resident01", oid, "rate", {"stars": 5}) == "rated"

        final = http.get(f"/orders/{oid}", headers=api.headers["resident01"]).json()
        assert final["status"] == "rated"
        events = http.get(f"/orders/{oid}/events", headers=api.headers["resident01"]).json()
        assert [e["action"] for e in events] == [
            "place", "approve", "dispatch", "accept", "check_in", "complete", "rate",
        ]  # fmt: skip
        assert events[-1]["to_status"] == "rated"

        # The other shapes of answer over uvicorn's own protocol: a streamed body and a HEAD (no body),
        # then JSON again on the same kept-alive connection.
        export = http.get("/admin/exports/orders.csv", headers=api.headers["zhan_admin"])
        assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
        assert export.text.startswith("\ufeff") and order["code"] in export.text
        assert "13812345678" not in export.text  # phones leave the system masked
        docs = httpx.get(f"{server.base_url}/docs", timeout=10)
        head = httpx.head(f"{server.base_url}/docs", timeout=10)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == docs.headers["content-length"] == str(len(docs.content))
        assert http.get(f"/orders/{oid}", headers=api.headers["resident01"]).json()["status"] == "rated"

    # SIGTERM (docker stop, systemd): a graceful stop that takes the embedded PostgreSQL down too.
    postmaster = server.postmaster_pid()
    assert postmaster is not None
    assert _stop(server) == 128 + signal.SIGTERM, server.output()
    deadline = time.monotonic() + 15
    while server.postmaster_pid() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.postmaster_pid() is None, f"embedded PostgreSQL left running:\n{server.output()}"
