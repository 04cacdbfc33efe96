"""TC3-HMAC-SHA256: Tencent Cloud API 3.0 request signing (签名方法 v3), as documented at
https://cloud.tencent.com/document/api/382/52071 (SMS) and https://cloud.tencent.com/document/api/213/30654.

Implemented here over ``hashlib``/``hmac`` rather than through ``tencentcloud-sdk-python``: the SDK
sends synchronously (``requests``-style, a blocking call per SMS), while the notification sender is
asyncio over one shared ``httpx.AsyncClient``; the signature is four HMACs, and the SMS stand-in in
the tests checks it independently.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json; charset=utf-8"
SIGNED_HEADERS = "content-type;host;x-tc-action"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def signature(secret_key: str, service: str, host: str, action: str, payload: bytes, timestamp: int) -> str:
    """The hex signature of a ``POST /`` with a JSON ``payload`` to ``host`` at ``timestamp``."""
    day = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    canonical_headers = f"content-type:{CONTENT_TYPE}\nhost:{host}\nx-tc-action:{action.lower()}\n"
    canonical_request = "\n".join(
        ["POST", "/", "", canonical_headers, SIGNED_HEADERS, hashlib.sha256(payload).hexdigest()]
    )
    scope = f"{day}/{service}/tc3_request"
    string_to_sign = "\n".join(
        [ALGORITHM, str(timestamp), scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), day), service), "tc3_request")
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def signed_headers(
    *,
    secret_id: str,
    secret_key: str,
    service: str,
    host: str,
    action: str,
    version: str,
    region: str,
    payload: bytes,
    timestamp: int,
) -> dict[str, str]:
    """The headers of a signed API 3.0 call (``Host`` is the one httpx sends for the URL)."""
    day = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    sig = signature(secret_key, service, host, action, payload, timestamp)
    credential = f"{secret_id}/{day}/{service}/tc3_request"
    return {
        "Authorization": f"{ALGORITHM} Credential={credential}, SignedHeaders={SIGNED_HEADERS}, Signature={sig}",
        "Content-Type": CONTENT_TYPE,
        "Host": host,
        "X-TC-Action": action,
        "X-TC-Timestamp": str(timestamp),
        "X-TC-Version": version,
        "X-TC-Region": region,
    }
