"""A newcomer pastes the README's first loop into a shell and meets no error: the block runs as it
stands against a live server with the demo county, its first line (the address) the only thing changed,
as the README says. Every curl there fails on an HTTP error (``--fail-with-body``), so a 422 fails this."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import pytest

from app.config import Settings
from app.demo import seed_demo
from tests.live import live_server

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- first-loop:"
README_ADDRESS = "API=http://127.0.0.1:8000/api/v1"


def first_loop() -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(re.escape(MARKER) + r".*?-->\s*```bash\n(.*?)```", text, re.S)
    assert found, "the README's first loop is gone"
    block = found[1]
    assert block.startswith(README_ADDRESS + "\n"), "the block must start by naming the address"
    return block


def test_every_request_body_is_shown() -> None:
    block = first_loop()
    for step in ("auth/login", "/orders ", "approve", "dispatch", "accept", "check-in", "complete", "rate"):
        assert step in block, step
    assert block.count("-d '") >= 7  # login ×3, place, dispatch, complete, rate


@pytest.mark.usefixtures("app")  # its teardown empties the tables the demo filled
async def test_the_readme_first_loop_runs_as_pasted(settings: Settings, database_url: str) -> None:
    assert await seed_demo(database_url) is True
    block = first_loop()
    with live_server(settings, database_url) as base_url:
        script = block.replace(README_ADDRESS, f"API={base_url}/api/v1", 1)
        bash = ["bash", "-e", "-o", "pipefail", "-c", script]
        result = await asyncio.to_thread(subprocess.run, bash, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    lines = result.stdout.split()
    statuses = ["approved", "dispatched", "accepted", "in_service", "completed", "rated"]
    assert lines[: len(statuses)] == statuses, result.stdout
    assert "check_in" in lines and lines[-1] == "rated", result.stdout
    assert "422" not in result.stdout + result.stderr
