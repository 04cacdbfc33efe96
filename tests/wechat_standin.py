"""A stand-in for WeChat's server API (api.weixin.qq.com) on loopback, for the notification tests."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse


class StandInWechat(BaseHTTPRequestHandler):
    """api.weixin.qq.com as far as subscribe messages go; behaviour set through class attributes.

    Tokens as WeChat issues them: ``cgi-bin/token`` makes a new one on every call and voids the last;
    ``cgi-bin/stable_token`` returns the current one while it is valid (a new one only when none is, or
    with ``force_refresh``, which voids the others)."""

    sends: ClassVar[list[dict[str, Any]]] = []  # successful sends
    attempts: ClassVar[int] = 0
    token_calls: ClassVar[int] = 0  # tokens fetched, either way
    forced_refreshes: ClassVar[int] = 0
    issued: ClassVar[int] = 0
    valid: ClassVar[set[str]] = set()
    current: ClassVar[str | None] = None
    fail_next: ClassVar[int] = 0  # answer HTTP 500 this many more times
    expire_token_once: ClassVar[bool] = False  # the next send finds the current token expired
    refuse: ClassVar[str | None] = None  # sends with this token fail (40001) though it stays current

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    @classmethod
    def _issue(cls) -> str:
        cls.issued += 1
        cls.current = f"token-{cls.issued}"
        cls.valid = {cls.current}
        return cls.current

    def do_GET(self) -> None:
        if urlparse(self.path).path != "/cgi-bin/token":
            return self._reply(404, {"errcode": 404})
        cls = StandInWechat
        cls.token_calls += 1
        return self._reply(200, {"access_token": cls._issue(), "expires_in": 7200})

    def _stable_token(self, body: dict[str, Any]) -> None:
        cls = StandInWechat
        cls.token_calls += 1
        if body.get("secret") != "wx-secret":
            return self._reply(200, {"errcode": 40125, "errmsg": "invalid appsecret"})
        if body.get("force_refresh"):
            cls.forced_refreshes += 1
            token = cls._issue()
        else:
            token = cls.current if cls.current in cls.valid else cls._issue()
        return self._reply(200, {"access_token": token, "expires_in": 7200})

    def do_POST(self) -> None:
        cls = StandInWechat
        url = urlparse(self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if url.path == "/cgi-bin/stable_token":
            return self._stable_token(body)
        cls.attempts += 1
        if cls.fail_next > 0:
            cls.fail_next -= 1
            return self._reply(500, {"errcode": -1, "errmsg": "system busy"})
        if cls.expire_token_once:
            cls.expire_token_once = False
            cls.valid = set()
        token = parse_qs(url.query)["access_token"][0]
        if token == cls.refuse:
            cls.refuse = None
            return self._reply(200, {"errcode": 40001, "errmsg": "invalid credential"})
        if token not in cls.valid:
            return self._reply(200, {"errcode": 42001, "errmsg": "access_token expired"})
        if body["touser"] == "openid-refused":
            return self._reply(200, {"errcode": 43101, "errmsg": "user refuse to accept the msg"})
        cls.sends.append(body | {"token": token})
        return self._reply(200, {"errcode": 0, "errmsg": "ok"})

    def log_message(self, *args: object) -> None:
        pass
