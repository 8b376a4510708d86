"""The HTTP protocol every twinmesh service runs uvicorn with (twinmesh.gateways.http).

A real uvicorn server (a subprocess on 127.0.0.1, with ``uvicorn_options()``) and raw
sockets, as a careless or hostile client would use them: a header block above the
limit is a 431, a half-sent one a 408 once its time is up, an idle connection closes,
and a slow response is never cut by that timer. Responses leave with ``TCP_NODELAY``
also on a listening socket shared by uvicorn's worker processes.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import BinaryIO

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from tests.helpers.processes import serving_process
from tests.helpers.stac_server import free_port
from twinmesh.gateways import http as gateway_http
from twinmesh.gateways.http import MAX_HEADER_BYTES, HttpProtocol

#: The server's header time-out in these tests (the default is 10 s).
TIMEOUT_S = 1.0

SERVER = textwrap.dedent(
    """
    import asyncio, sys
    import uvicorn
    from twinmesh.gateways import http

    http.HEADER_TIMEOUT_S = float(sys.argv[2])

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            await asyncio.sleep(3 * http.HEADER_TIMEOUT_S)
        received = 0
        while True:
            message = await receive()
            received += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = scope["path"].encode() if not received else b"%d bytes" % received
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), **http.uvicorn_options())
    """
)


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    work = tmp_path_factory.mktemp("http-protocol")
    (work / "server.py").write_text(SERVER)
    port = free_port()
    with serving_process(
        [sys.executable, str(work / "server.py"), str(port), str(TIMEOUT_S)],
        env={"PATH": "/usr/bin:/bin"},
        cwd=work,
        log_path=work / "server.log",
        health_url=f"http://127.0.0.1:{port}/ping",
        name="uvicorn server",
    ):
        yield port


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(10 * TIMEOUT_S)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _read_response(stream: BinaryIO) -> bytes:
    """One whole response from ``sock.makefile("rb")`` (the test app always sends a
    content-length), and not a byte of the next one."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = stream.readline()
        assert line, f"the connection closed after {head!r}"
        head += line
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head + stream.read(length)


def _request(path: str, header_bytes: int = 0) -> bytes:
    extra = b"X-Padding: " + b"a" * header_bytes + b"\r\n" if header_bytes else b""
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n"


def test_a_header_block_below_the_limit_is_served(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(_request("/fine", MAX_HEADER_BYTES - 1000))
        assert _read_response(sock.makefile("rb")).startswith(b"HTTP/1.1 200 OK")


def test_a_header_block_above_the_limit_is_a_431(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(_request("/big", MAX_HEADER_BYTES + 1000))
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large"), answer[:200]
    assert str(MAX_HEADER_BYTES).encode() in answer


def test_a_header_block_sent_in_pieces_counts_every_piece(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(b"GET /pieces HTTP/1.1\r\nHost: t\r\n")
        answer = b""
        for n in range(40):
            try:
                sock.sendall(b"X-Piece-%d: " % n + b"b" * 4000 + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.01)
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def test_a_big_body_in_pieces_is_not_taken_for_headers(port: int) -> None:
    """Only header bytes count against the header limit, also when a body's last
    piece (above the limit itself) arrives in a read of its own."""
    pieces = [b"a" * 100_000, b"b" * 200_000]
    with _connect(port) as sock:
        stream = sock.makefile("rb")
        for _ in range(2):  # twice on one connection: the second request counts anew
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\ncontent-length: 300000\r\n\r\n")
            for piece in pieces:
                time.sleep(0.05)
                sock.sendall(piece)
            answer = _read_response(stream)
            assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:200]
            assert answer.endswith(b"300000 bytes")


def test_a_half_sent_request_is_a_408_once_its_time_is_up(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(b"GET /half HTTP/1.1\r\nHost: t\r\n")
        started = time.monotonic()
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout"), answer[:200]
    assert time.monotonic() - started < 8 * TIMEOUT_S


def test_an_idle_connection_is_closed(port: int) -> None:
    with _connect(port) as sock:
        assert _read_until_closed(sock) == b""


def test_a_slow_response_is_not_cut_and_the_connection_stays_usable(port: int) -> None:
    """The app takes 3x the header time-out: the timer must not close the connection
    while the response is being made, nor before the next request on it."""
    with _connect(port) as sock:
        sock.sendall(_request("/slow"))
        stream = sock.makefile("rb")
        first = _read_response(stream)
        assert first.startswith(b"HTTP/1.1 200 OK") and first.endswith(b"/slow"), first
        sock.sendall(_request("/again"))
        second = _read_response(stream)
        assert second.startswith(b"HTTP/1.1 200 OK") and second.endswith(b"/again"), second


def test_pipelined_requests_are_answered_in_order(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(_request("/one") + _request("/two"))
        stream = sock.makefile("rb")
        assert _read_response(stream).endswith(b"\r\n\r\n/one")
        assert _read_response(stream).endswith(b"\r\n\r\n/two")


def test_responses_leave_without_nagle_delay_on_a_shared_socket() -> None:
    """uvicorn's ``workers`` > 1 shares a listening socket made as
    ``socket.socket(AF_INET)`` (protocol 0): asyncio then leaves ``TCP_NODELAY`` unset on
    each connection, and every response waited ~40 ms for the client's delayed ACK."""

    async def accepted_nodelay() -> int:
        listener = socket.socket(socket.AF_INET)  # as uvicorn's Config.bind_socket makes it
        listener.bind(("127.0.0.1", 0))
        config = Config(app=lambda *a: None, **gateway_http.uvicorn_options())
        config.load()
        made: list[HttpProtocol] = []

        def protocol() -> HttpProtocol:
            made.append(HttpProtocol(config=config, server_state=ServerState(), app_state={}))
            return made[-1]

        server = await asyncio.get_running_loop().create_server(protocol, sock=listener)
        try:
            _, writer = await asyncio.open_connection(*listener.getsockname())
            while not made or made[-1].transport is None:
                await asyncio.sleep(0.01)
            sock = made[-1].transport.get_extra_info("socket")
            value = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            writer.close()
            made[-1].transport.close()
            return value
        finally:
            server.close()

    assert asyncio.run(accepted_nodelay()) == 1
