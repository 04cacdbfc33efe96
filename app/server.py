"""The HTTP protocol ``sidan serve`` runs: uvicorn's (httptools), each response's head written
together with its body.

uvicorn writes a response's status line and headers when the app starts the response, and the body
when it sends it: two writes, so two system calls and two TCP segments for nearly every answer of
this API (one JSON body each), and a client woken twice. ``HeadWithBody`` holds the head back until
the body's first write, or until the event loop's next turn if the body is not sent in this one (a
streamed export, a ``HEAD`` request): the bytes on the wire are the same, in order.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_STATUS_LINE = b"HTTP/1.1 "
_END_OF_HEAD = b"\r\n\r\n"


class _HeadWithBody:
    """A transport that holds a response head back until the next write (or the loop's next turn);
    everything else is the wrapped transport's, the head written first."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head + bytes(data))
        elif isinstance(data, bytes) and data.startswith(_STATUS_LINE) and data.endswith(_END_OF_HEAD):
            self._head = data
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            if not self._transport.is_closing():
                self._transport.write(head)

    def __getattr__(self, name: str) -> Any:
        self._flush()  # whatever the protocol does next (close, pause …) comes after the head
        return getattr(self._transport, name)


class HeadWithBody(HttpToolsProtocol):
    """uvicorn's httptools protocol on ``_HeadWithBody``: see the module docstring."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_HeadWithBody(transport))  # type: ignore[arg-type]
