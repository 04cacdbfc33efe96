"""The load generator's HTTP client (``bench/client.py``) against a loopback server speaking raw HTTP/1.1:
whatever it reports as the service's answers must be the bytes the server sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bench.client import LeanClient, NoResponse

# One canned response per path: sized, chunked, closing the connection, cut short.
RESPONSES = {
    b"/sized": b'HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{"id": 7}',
    b"/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;x=1\r\nefg\r\n0\r\n\r\n",
    b"/close": b"HTTP/1.1 409 Conflict\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno",
    b"/cut": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
}


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[bytes], list[int]]]:
    requests: list[bytes] = []
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                sizes = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
                length = int(sizes[0].split(b":")[1]) if sizes else 0
                requests.append(head + await reader.readexactly(length))
                path = head.split(b" ")[1]
                writer.write(RESPONSES[path])
                await writer.drain()
                if path in (b"/close", b"/cut"):
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield f"http://127.0.0.1:{port}", requests, connections


async def test_responses_are_read_whole_over_one_kept_alive_connection(
    server: tuple[str, list[bytes], list[int]],
) -> None:
    base, requests, connections = server
    async with LeanClient(base, connections=1) as http:
        sized = await http.post("/sized", json={"a": "点单"}, headers={"Authorization": "Bearer t"})
        chunked = await http.get("/chunked", headers={})
        again = await http.get("/chunked", headers={})
    assert (sized.status_code, sized.json()) == (201, {"id": 7})
    assert (chunked.status_code, chunked.body, again.body) == (200, b"abcdefg", b"abcdefg")
    assert len(connections) == 1  # kept alive
    first = requests[0]
    assert first.startswith(b"POST /sized HTTP/1.1\r\n")
    assert b"Authorization: Bearer t\r\n" in first and b"Content-Type: application/json\r\n" in first
    assert first.endswith('{"a":"点单"}'.encode())


async def test_a_closing_server_gets_a_new_connection_and_a_cut_response_is_no_response(
    server: tuple[str, list[bytes], list[int]],
) -> None:
    base, _, connections = server
    async with LeanClient(base, connections=4) as http:
        closed = await http.get("/close", headers={})
        assert (closed.status_code, closed.body) == (409, b"no")
        assert (await http.get("/sized", headers={})).status_code == 201
        assert len(connections) == 2  # the closed one was not reused
        with pytest.raises(NoResponse):
            await http.get("/cut", headers={})


async def test_nothing_listening_is_no_response() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    async with LeanClient(f"http://127.0.0.1:{port}", connections=1) as http:
        with pytest.raises(NoResponse):
            await http.get("/", headers={})
