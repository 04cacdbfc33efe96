"""A stand-in for WeChat's server API (api.weixin.qq.com) on loopback, for the notification and login tests.

It behaves the way WeChat does where the service depends on it: tokens are issued only for the right
appid and secret; a new token voids the older ones (a send with one answers 40001); code2session and
subscribe/send answer the errcodes a test asks for; getuserphonenumber verifies a phone code once."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

APPID, SECRET = "wx-app", "wx-secret"
ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40003: "invalid openid",
    40013: "invalid appid",
    40029: "invalid code",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    40163: "code been used",
    40164: "invalid ip, not in whitelist",
    40226: "high risk user",
    41030: "invalid page",
    42001: "access_token expired",
    43101: "user refuse to accept the msg",
    45011: "api minute-quota reach limit, must slower, retry next minute",
    47003: "argument invalid! data.thing2.value invalid",
}


class StandInWechat(BaseHTTPRequestHandler):
    """api.weixin.qq.com as far as login and subscribe messages go; behaviour set through class attributes.

    Tokens as WeChat issues them: ``cgi-bin/token`` makes a new one on every call and voids the last;
    ``cgi-bin/stable_token`` returns the current one while it is valid (a new one only when none is, or
    with ``force_refresh``, which voids the others). Both check the appid and secret."""

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
    send_errcodes: ClassVar[list[int]] = []  # the next sends answer these errcodes, one each
    login_errcodes: ClassVar[list[int]] = []  # the next code2session calls answer these errcodes
    stale_refusals: ClassVar[int] = 0  # sends refused (40001) for a token voided by a newer one
    # getuserphonenumber: the code ``phone-<digits>`` verifies +86 <digits> (``phone-<cc>-<digits>``
    # another country's; ``.<anything>`` after it makes another code for the same number), once;
    # ``phone_appid`` is the app the watermark names.
    used_phone_codes: ClassVar[set[str]] = set()
    phone_appid: ClassVar[str] = APPID

    @classmethod
    def reset(cls) -> None:
        cls.sends, cls.attempts, cls.token_calls, cls.forced_refreshes, cls.issued = [], 0, 0, 0, 0
        cls.valid, cls.current, cls.fail_next, cls.expire_token_once, cls.refuse = set(), None, 0, False, None
        cls.send_errcodes, cls.login_errcodes, cls.stale_refusals = [], [], 0
        cls.used_phone_codes, cls.phone_appid = set(), APPID

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, errcode: int) -> None:
        return self._reply(200, {"errcode": errcode, "errmsg": ERRMSG.get(errcode, "error")})

    @classmethod
    def _issue(cls) -> str:
        cls.issued += 1
        cls.current = f"token-{cls.issued}"
        cls.valid = {cls.current}
        return cls.current

    @staticmethod
    def _credentials_error(appid: object, secret: object) -> int | None:
        if appid != APPID:
            return 40013
        if secret != SECRET:
            return 40125
        return None

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        cls = StandInWechat
        if url.path == "/sns/jscode2session":
            return self._code2session(query)
        if url.path != "/cgi-bin/token":
            return self._reply(404, {"errcode": 404})
        cls.token_calls += 1
        if errcode := self._credentials_error(query.get("appid"), query.get("secret")):
            return self._error(errcode)
        return self._reply(200, {"access_token": cls._issue(), "expires_in": 7200})

    def _code2session(self, query: dict[str, str]) -> None:
        cls = StandInWechat
        if errcode := self._credentials_error(query.get("appid"), query.get("secret")):
            return self._error(errcode)
        if cls.login_errcodes:
            return self._error(cls.login_errcodes.pop(0))
        code = query.get("js_code", "")
        if not code.startswith("good-"):
            return self._error(40029)
        return self._reply(200, {"openid": f"openid-{code[5:]}", "session_key": "sk"})

    def _stable_token(self, body: dict[str, Any]) -> None:
        cls = StandInWechat
        cls.token_calls += 1
        if errcode := self._credentials_error(body.get("appid"), body.get("secret")):
            return self._error(errcode)
        if body.get("force_refresh"):
            cls.forced_refreshes += 1
            token = cls._issue()
        else:
            token = cls.current if cls.current in cls.valid else cls._issue()
        return self._reply(200, {"access_token": token, "expires_in": 7200})

    def _phone_number(self, token: str, body: dict[str, Any]) -> None:
        cls = StandInWechat
        if token not in cls.valid:
            cls.stale_refusals += 1
            return self._error(40001)
        code = str(body.get("code", ""))
        if not code.startswith("phone-") or code in cls.used_phone_codes:
            return self._error(40029)
        cls.used_phone_codes.add(code)
        country, _, number = code[len("phone-") :].partition(".")[0].rpartition("-")
        return self._reply(200, {"errcode": 0, "errmsg": "ok", "phone_info": {
            "phoneNumber": number, "purePhoneNumber": number, "countryCode": country or "86",
            "watermark": {"timestamp": 1764979200, "appid": cls.phone_appid},
        }})  # fmt: skip

    def do_POST(self) -> None:
        cls = StandInWechat
        url = urlparse(self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if url.path == "/cgi-bin/stable_token":
            return self._stable_token(body)
        if url.path == "/wxa/business/getuserphonenumber":
            return self._phone_number(parse_qs(url.query)["access_token"][0], body)
        cls.attempts += 1
        if cls.fail_next > 0:
            cls.fail_next -= 1
            return self._reply(500, {"errcode": -1, "errmsg": "system busy"})
        if cls.expire_token_once:
            cls.expire_token_once = False
            cls.valid = set()
            return self._error(42001)
        token = parse_qs(url.query)["access_token"][0]
        if token == cls.refuse:
            cls.refuse = None
            return self._error(40001)
        if token not in cls.valid:  # issued, then voided by a newer one
            cls.stale_refusals += 1
            return self._error(40001)
        if cls.send_errcodes:
            return self._error(cls.send_errcodes.pop(0))
        if body["touser"] == "openid-refused":
            return self._error(43101)
        cls.sends.append(body | {"token": token})
        return self._reply(200, {"errcode": 0, "errmsg": "ok"})

    def log_message(self, *args: object) -> None:
        pass
