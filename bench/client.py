"""A lean HTTP/1.1 client for the load generator: keep-alive connections over asyncio streams.

httpx spends about a millisecond of CPU on each request; with 32 clients in one process the load
generator, not the service, was the busiest process on the machine (a core at 80–100 % while the
service used half of one), so (a)–(c) measured the client. This one builds the request bytes, reads
the status line, the headers and a ``Content-Length`` (or chunked) body, and nothing else: enough for
the service's JSON endpoints, a few tens of microseconds a request.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import orjson


class NoResponse(Exception):
    """The connection failed or closed before a whole response arrived (counted, not fatal)."""


class Response:
    __slots__ = ("body", "status_code")

    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code = status_code
        self.body = body

    def json(self) -> Any:
        return orjson.loads(self.body)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class LeanClient:
    """Up to ``connections`` keep-alive connections to ``base`` (``http://host:port``), shared by
    however many coroutines call ``request``; each request holds one connection until its response
    has been read."""

    def __init__(self, base: str, connections: int, timeout: float = 60) -> None:
        url = urlsplit(base)
        if url.scheme != "http" or url.hostname is None:
            raise ValueError(f"an http://host:port base URL, not {base!r}")
        self.host, self.port = url.hostname, url.port or 80
        self.timeout = timeout
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(connections)
        self._host_header = f"Host: {url.netloc}\r\n".encode()

    async def __aenter__(self) -> LeanClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()

    async def get(self, path: str, headers: dict[str, str]) -> Response:
        return await self.request("GET", path, headers)

    async def post(self, path: str, json: Any, headers: dict[str, str]) -> Response:
        return await self.request("POST", path, headers, orjson.dumps(json))

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> Response:
        head = [f"{method} {path} HTTP/1.1\r\n".encode(), self._host_header]
        head.extend(f"{name}: {value}\r\n".encode() for name, value in headers.items())
        if body is not None:
            head.append(b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body))
        head.append(b"\r\n")
        message = b"".join(head) + (body or b"")
        async with self._slots:
            connection = self._idle.pop() if self._idle else None
            try:
                if connection is None:
                    connection = _Connection(*await asyncio.open_connection(self.host, self.port))
                async with asyncio.timeout(self.timeout):
                    connection.writer.write(message)
                    status, payload, keep_alive = await _read_response(connection.reader)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
                if connection is not None:
                    connection.close()
                raise NoResponse(f"{type(exc).__name__}: {exc}") from exc
            if keep_alive:
                self._idle.append(connection)
            else:
                connection.close()
        return Response(status, payload)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, whether the connection stays open) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, chunked, keep_alive = None, False, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif name == "connection":
            keep_alive = "close" not in value.lower()
    if chunked:
        parts = []
        while size := int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")  # no trailers from this service: the last chunk's blank line
        return status, b"".join(parts), keep_alive
    return status, await reader.readexactly(length or 0), keep_alive
