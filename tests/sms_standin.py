"""A stand-in for Tencent Cloud SMS (sms.tencentcloudapi.com, API 3.0 ``SendSms``) on loopback.

It checks each request's TC3-HMAC-SHA256 signature the way Tencent does: recomputed here from the
secret key, written from the documentation (https://cloud.tencent.com/document/api/382/52071), not
with the service's own code, so a signing bug cannot hide behind itself. It answers Tencent's error
shape, and fails on demand."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

SECRET_ID, SECRET_KEY, SDK_APP_ID = "AKIDsidanstandin", "sidan-standin-secret-key", "1400000001"


def tc3_signature(secret_key: str, day: str, string_to_sign: str) -> str:
    def sign(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    secret_date = sign(("TC3" + secret_key).encode("utf-8"), day)
    secret_service = sign(secret_date, "sms")
    secret_signing = sign(secret_service, "tc3_request")
    return hmac.new(secret_signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


class StandInSms(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []  # requests whose signature held
    rejected: ClassVar[list[str]] = []  # error codes answered for bad signatures or credentials
    fail_next: ClassVar[list[str]] = []  # the next accepted requests fail with these error codes
    status_codes: ClassVar[list[str]] = []  # … or answer this per-number SendStatusSet code
    lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def reset(cls) -> None:
        cls.received, cls.rejected, cls.fail_next, cls.status_codes = [], [], [], []

    def do_POST(self) -> None:
        payload = self.rfile.read(int(self.headers["Content-Length"]))
        if problem := self._signature_problem(payload):
            with self.lock:
                StandInSms.rejected.append(problem)
            return self._answer({"Error": {"Code": problem, "Message": "signature check failed"}})
        body = json.loads(payload)
        with self.lock:
            failure = StandInSms.fail_next.pop(0) if StandInSms.fail_next else None
            status_code = StandInSms.status_codes.pop(0) if StandInSms.status_codes else "Ok"
            if failure is None:
                StandInSms.received.append({"body": body, "headers": dict(self.headers)})
            serial = f"2433:{len(StandInSms.received)}"
        if failure is not None:
            return self._answer({"Error": {"Code": failure, "Message": f"{failure} (on demand)"}})
        phone = body["PhoneNumberSet"][0]
        return self._answer({"SendStatusSet": [{
            "SerialNo": serial, "PhoneNumber": phone, "Fee": 1, "SessionContext": body.get("SessionContext", ""),
            "Code": status_code, "Message": "send success" if status_code == "Ok" else status_code, "IsoCode": "CN",
        }]})  # fmt: skip

    def _signature_problem(self, payload: bytes) -> str | None:
        h = self.headers
        auth = h.get("Authorization", "")
        if not auth.startswith("TC3-HMAC-SHA256 "):
            return "AuthFailure.SignatureFailure"
        parts = dict(p.strip().split("=", 1) for p in auth[len("TC3-HMAC-SHA256 ") :].split(","))
        secret_id, day, service, terminator = parts.get("Credential", "////").split("/")
        if secret_id != SECRET_ID:
            return "AuthFailure.SecretIdNotFound"
        timestamp = int(h.get("X-TC-Timestamp", "0"))
        if abs(time.time() - timestamp) > 300:
            return "AuthFailure.SignatureExpire"
        if day != datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d") or (service, terminator) != (
            "sms",
            "tc3_request",
        ):
            return "AuthFailure.SignatureFailure"
        if h.get("X-TC-Action") != "SendSms" or h.get("X-TC-Version") != "2021-01-11":
            return "InvalidAction"
        signed = parts.get("SignedHeaders", "").split(";")
        if "host" not in signed or "content-type" not in signed:
            return "AuthFailure.SignatureFailure"
        canonical_headers = "".join(f"{name}:{h.get(name, '').strip().lower()}\n" for name in signed)
        canonical_request = "POST\n/\n\n" + canonical_headers + "\n" + ";".join(signed) + "\n"
        canonical_request += hashlib.sha256(payload).hexdigest()
        string_to_sign = (
            f"TC3-HMAC-SHA256\n{timestamp}\n{day}/sms/tc3_request\n"
            + hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
        )
        if not hmac.compare_digest(parts.get("Signature", ""), tc3_signature(SECRET_KEY, day, string_to_sign)):
            return "AuthFailure.SignatureFailure"
        return None

    def _answer(self, response: dict[str, Any]) -> None:
        data = json.dumps({"Response": response | {"RequestId": "standin-request"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def serve_sms() -> Iterator[str]:
    """The stand-in on a free loopback port, for a fixture: yields its base URL."""
    StandInSms.reset()
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandInSms)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
