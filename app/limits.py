"""Abuse limits that need no database: the request body size (413)."""

from __future__ import annotations

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised while the app reads a streamed body past the limit (FastAPI passes HTTPExceptions through)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"请求体超过 {max_bytes} 字节")


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413, whether announced (Content-Length) or streamed.

    ``prefix_limits`` gives some paths a limit of their own (file uploads: ``/api/v1/admin/imports/``)."""

    def __init__(self, app: ASGIApp, max_bytes: int, prefix_limits: dict[str, int] | None = None) -> None:
        self.app, self.default_max_bytes = app, max_bytes
        self.prefix_limits = tuple((prefix_limits or {}).items())

    def limit_for(self, path: str) -> int:
        for prefix, max_bytes in self.prefix_limits:
            if path.startswith(prefix):
                return max_bytes
        return self.default_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_for(scope.get("path", ""))
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > max_bytes:
                await self._refuse(send, max_bytes)
                return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, send: Send, max_bytes: int) -> None:
        body = orjson.dumps(
            {"error": {"code": "payload_too_large", "message": f"请求体超过 {max_bytes} 字节", "details": {}}}
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
