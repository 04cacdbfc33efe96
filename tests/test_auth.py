"""Login, tokens, WeChat code2session against a local stand-in server over real HTTP."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import hash_password
from app.config import Settings
from app.main import create_app
from app.models import User
from tests.world import World


async def set_password(sessionmaker: async_sessionmaker[AsyncSession], username: str, password: str) -> None:
    hashed = await hash_password(password)
    async with sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.username == username).values(password_hash=hashed))


async def test_login_returns_a_working_token(world: World, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await set_password(sessionmaker, "zhan11_admin", "correct horse")
    response = await world.client.post("/auth/login", json={"username": "zhan11_admin", "password": "correct horse"})
    assert response.status_code == 200
    data = response.json()
    assert data["token_type"] == "bearer"
    assert data["user"] == {
        "id": world.users["zhan11_admin"],
        "username": "zhan11_admin",
        "role": "admin",
        "unit_id": world.units["zhan11"],
    }
    me = await world.client.get("/me", headers={"Authorization": f"Bearer {data['access_token']}"})
    assert me.json() == {
        "id": world.users["zhan11_admin"],
        "username": "zhan11_admin",
        "role": "admin",
        "unit_id": world.units["zhan11"],
        "volunteer_id": None,
    }


async def test_me_of_a_volunteer_names_the_profile(world: World) -> None:
    me = (await world.client.get("/me", headers=world.h("v11a"))).json()
    assert me["role"] == "volunteer" and me["volunteer_id"] == world.volunteers["v11a"]


@pytest.mark.parametrize(("username", "password"), [("zhan11_admin", "wrong"), ("nobody", "correct horse")])
async def test_bad_credentials_are_401_alike(
    world: World, sessionmaker: async_sessionmaker[AsyncSession], username: str, password: str
) -> None:
    await set_password(sessionmaker, "zhan11_admin", "correct horse")
    response = await world.client.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "用户名或密码错误"


async def test_disabled_account_cannot_log_in_and_its_tokens_stop_working(
    world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await set_password(sessionmaker, "r1", "resident-pass")
    async with sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.username == "r1").values(is_active=False))
    assert (
        await world.client.post("/auth/login", json={"username": "r1", "password": "resident-pass"})
    ).status_code == 401
    assert (await world.client.get("/me", headers=world.h("r1"))).status_code == 401


async def test_token_version_bump_voids_old_tokens(
    world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    assert (await world.client.get("/me", headers=world.h("r1"))).status_code == 200
    async with sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.username == "r1").values(token_version=User.token_version + 1))
    assert (await world.client.get("/me", headers=world.h("r1"))).status_code == 401


@pytest.mark.parametrize("token", ["garbage", "a.b.c", ""])
async def test_malformed_tokens_are_401(world: World, token: str) -> None:
    response = await world.client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_expired_and_foreign_tokens_are_401(world: World) -> None:
    now = datetime.now(UTC)
    claims = {"sub": str(world.users["r1"]), "tv": 0, "role": "resident"}
    expired = jwt.encode(claims | {"exp": now - timedelta(minutes=1)}, world.settings.token_secret, "HS256")
    forged = jwt.encode(claims | {"exp": now + timedelta(hours=1)}, "another-secret-" * 3, "HS256")
    for token in (expired, forged):
        assert (await world.client.get("/me", headers={"Authorization": f"Bearer {token}"})).status_code == 401


async def test_a_token_accepted_before_is_refused_once_it_expires(world: World) -> None:
    """The signature check is cached per token; the expiry is checked on every request."""
    claims = {"sub": str(world.users["r1"]), "tv": 0, "role": "resident"}
    token = jwt.encode(claims | {"exp": datetime.now(UTC) + timedelta(seconds=2)}, world.settings.token_secret, "HS256")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await world.client.get("/me", headers=headers)).status_code == 200
    await asyncio.sleep(2.2)
    assert (await world.client.get("/me", headers=headers)).status_code == 401


def test_production_refuses_the_default_secret() -> None:
    with pytest.raises(ValidationError, match="SIDAN_TOKEN_SECRET"):
        Settings(environment="production")
    own_key = Fernet.generate_key().decode()
    with pytest.raises(ValidationError, match="SIDAN_DATA_KEYS"):
        Settings(environment="production", token_secret="x" * 40)
    with pytest.raises(ValidationError, match="DEV_TOKEN"):
        Settings(environment="production", token_secret="x" * 40, data_keys=own_key, enable_dev_token=True)
    with pytest.raises(ValidationError, match="Fernet key"):
        Settings(data_keys="not-a-key")
    assert Settings(environment="production", token_secret="x" * 40, data_keys=own_key).environment == "production"


def test_dev_token_endpoint_is_not_mounted_unless_enabled() -> None:
    assert "/api/v1/auth/dev-token" not in create_app(Settings(environment="development")).openapi()["paths"]
    assert "/api/v1/auth/dev-token" in create_app(Settings(enable_dev_token=True)).openapi()["paths"]


# ---- WeChat -----------------------------------------------------------------------------------


class FakeWechat(BaseHTTPRequestHandler):
    """Stand-in for api.weixin.qq.com /sns/jscode2session."""

    calls: ClassVar[list[dict[str, list[str]]]] = []

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        FakeWechat.calls.append(query)
        code = query.get("js_code", [""])[0]
        if url.path != "/sns/jscode2session":
            status, body = 404, b"not found"
        elif code.startswith("good-"):
            status, body = 200, json.dumps({"openid": f"openid-{code[5:]}", "session_key": "sk"}).encode()
        elif code == "broken":
            status, body = 502, b"<html>bad gateway</html>"
        else:
            status, body = 200, json.dumps({"errcode": 40029, "errmsg": "invalid code"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def wechat(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeWechat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(app.state.settings, "wechat_base_url", base)
    FakeWechat.calls.clear()
    yield base
    server.shutdown()
    server.server_close()


async def test_wechat_login_creates_the_resident_once(
    world: World, wechat: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    first = await world.client.post("/auth/wechat", json={"code": "good-abc"})
    second = await world.client.post("/auth/wechat", json={"code": "good-abc"})
    assert first.status_code == second.status_code == 200
    assert first.json()["user"]["id"] == second.json()["user"]["id"]
    assert first.json()["user"]["role"] == "resident"
    assert FakeWechat.calls[0]["appid"] == [world.settings.wechat_appid]
    assert FakeWechat.calls[0]["grant_type"] == ["authorization_code"]
    async with sessionmaker() as session:
        users = (await session.execute(select(User).where(User.wechat_openid == "openid-abc"))).scalars().all()
    assert len(users) == 1
    token = first.json()["access_token"]
    order = await world.client.post("/orders", json=world.order_body(), headers={"Authorization": f"Bearer {token}"})
    assert order.status_code == 201 and order.json()["resident_id"] == users[0].id


async def test_wechat_invalid_code_is_401(world: World, wechat: str) -> None:
    response = await world.client.post("/auth/wechat", json={"code": "expired-code"})
    assert response.status_code == 401
    assert response.json()["error"]["details"]["wechat_errcode"] == 40029


async def test_wechat_down_or_broken_is_503(
    world: World, wechat: str, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await world.client.post("/auth/wechat", json={"code": "broken"})).status_code == 503
    monkeypatch.setattr(app.state.settings, "wechat_base_url", "http://127.0.0.1:9")  # nothing listens
    assert (await world.client.post("/auth/wechat", json={"code": "good-x"})).status_code == 503


async def test_wechat_code_is_validated(world: World, wechat: str) -> None:
    for body in ({}, {"code": ""}, {"code": "has space"}, {"code": "x" * 300}):
        assert (await world.client.post("/auth/wechat", json=body)).status_code == 422
    assert FakeWechat.calls == []
