"""The HTTP protocol ``sidan serve`` runs (``app.server``): each response's head goes out with its body,
and nothing else about the bytes on the wire changes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app.server import HeadWithBody, _HeadWithBody

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recording:
    """A transport that records what is written and done to it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def close(self) -> None:
        self.calls.append(("close", None))

    def is_closing(self) -> bool:
        return False


def wrapped() -> tuple[Recording, Any]:
    recording = Recording()
    return recording, _HeadWithBody(recording)  # type: ignore[arg-type]


async def test_a_head_and_its_body_are_one_write() -> None:
    recording, transport = wrapped()
    transport.write(HEAD)
    assert recording.calls == []
    transport.write(b"{}")
    transport.write(b"more")  # a later chunk of a streamed body goes as it is
    assert recording.calls == [("write", HEAD + b"{}"), ("write", b"more")]
    await asyncio.sleep(0)
    assert len(recording.calls) == 2  # nothing left to flush


async def test_a_head_without_a_body_this_turn_goes_on_the_next() -> None:
    """A HEAD answer (no body write) or a body that comes later: the head is written on the loop's
    next turn, before anything else."""
    recording, transport = wrapped()
    transport.write(HEAD)
    await asyncio.sleep(0)
    assert recording.calls == [("write", HEAD)]
    transport.write(b"{}")
    assert recording.calls == [("write", HEAD), ("write", b"{}")]


async def test_whatever_the_protocol_does_next_comes_after_the_head() -> None:
    recording, transport = wrapped()
    transport.write(HEAD)
    transport.close()
    assert recording.calls == [("write", HEAD), ("close", None)]


async def test_writes_that_are_not_a_head_go_at_once() -> None:
    recording, transport = wrapped()
    transport.write(b"HTTP/1.1 is not a head without its blank line")
    transport.write(b"0\r\n\r\n")  # the end of a chunked body
    assert [data for _, data in recording.calls] == [b"HTTP/1.1 is not a head without its blank line", b"0\r\n\r\n"]


async def _json(request: Request) -> Response:
    return JSONResponse({"path": request.url.path})


async def _stream(_: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(3):
            await asyncio.sleep(0.01)
            yield f"line {i}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


async def _empty(_: Request) -> Response:
    return Response(status_code=204)


@pytest.fixture
async def served() -> AsyncIterator[str]:
    """A small app behind uvicorn with ``HeadWithBody`` on a real socket."""
    app = Starlette(
        routes=[Route("/json", _json, methods=["GET", "HEAD"]), Route("/stream", _stream), Route("/empty", _empty)]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, http=HeadWithBody, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_responses_read_the_same_through_a_real_socket(served: str) -> None:
    async with httpx.AsyncClient(base_url=served) as client:  # one kept-alive connection
        for _ in range(3):
            response = await client.get("/json")
            assert (response.status_code, response.json()) == (200, {"path": "/json"})
        head = await client.head("/json")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == response.headers["content-length"]
        streamed = await client.get("/stream")
        assert streamed.text == "line 0\nline 1\nline 2\n"
        empty = await client.get("/empty")
        assert (empty.status_code, empty.content) == (204, b"")
        assert (await client.get("/json")).json() == {"path": "/json"}


async def test_the_server_writes_each_answer_once(served: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the real server, every answer (head and body) is one write on the socket's transport."""
    writes: list[bytes] = []
    wrap = _HeadWithBody.__init__

    def counting(self: _HeadWithBody, transport: Any) -> None:
        real = transport.write

        def write(data: bytes) -> None:
            writes.append(bytes(data))
            real(data)

        transport.write = write
        wrap(self, transport)

    monkeypatch.setattr(_HeadWithBody, "__init__", counting)
    async with httpx.AsyncClient(base_url=served) as client:
        for _ in range(3):
            assert (await client.get("/json")).json() == {"path": "/json"}
    assert len(writes) == 3
    assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") and w.endswith(b'{"path":"/json"}') for w in writes)
