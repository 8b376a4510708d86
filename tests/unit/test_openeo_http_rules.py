"""twinmesh.gateways.http: the HTTP rules every service keeps, with a service's own
error shape (here a minimal one), checked on a small Starlette app."""

from __future__ import annotations

import logging

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from twinmesh.gateways.http import HttpRules, guard, read_json, request_id


def _error(status: int, code: str, message: str, rid: str) -> Response:
    return JSONResponse({"code": code, "message": message, "rid": rid}, status_code=status)


def _app(logger: logging.Logger) -> TestClient:
    async def boom(request: Request) -> Response:
        raise RuntimeError("secret path /etc/db and backend name")

    async def echo(request: Request) -> Response:
        return JSONResponse({"got": await read_json(request), "rid": request_id(request)})

    app = Starlette(routes=[Route("/boom", boom), Route("/echo", echo, methods=["POST"])])
    rules = HttpRules(max_body_bytes=100, error_body=_error, logger=logger)
    return TestClient(guard(app, rules), raise_server_exceptions=True)


@pytest.fixture
def client() -> TestClient:
    return _app(logging.getLogger("test.http.rules"))


def test_a_500_names_only_a_request_id_and_logs_one_traceback(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="test.http.rules"):
        response = client.get("/boom")
    assert response.status_code == 500
    body = response.json()
    rid = response.headers["x-request-id"]
    assert body == {
        "code": "InternalError",
        "message": f"internal error (request id {rid})",
        "rid": rid,
    }
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and rid in errors[0].getMessage() and errors[0].exc_info
    access = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(access) == 1 and "500" in access[0].getMessage() and rid in access[0].getMessage()


def test_body_limit_media_type_and_json(client: TestClient) -> None:
    too_big = client.post("/echo", content=b"x" * 101, headers={"content-type": "application/json"})
    assert too_big.status_code == 413
    assert "limit of 100 bytes" in too_big.json()["message"]

    def chunks():  # no Content-Length: counted as the bytes arrive
        yield b'{"a": "'
        yield b"y" * 200
        yield b'"}'

    streamed = client.post("/echo", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    wrong = client.post("/echo", content=b"{}", headers={"content-type": "text/plain"})
    assert wrong.status_code == 415 and wrong.json()["code"] == "UnsupportedMediaType"
    broken = client.post("/echo", content=b"{", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["code"] == "BadRequest"
    ok = client.post("/echo", json={"a": 1}, headers={"x-request-id": "abc-123"})
    assert ok.json() == {"got": {"a": 1}, "rid": "abc-123"}
    assert ok.headers["x-request-id"] == "abc-123"
    odd = client.post("/echo", json={}, headers={"x-request-id": "no spaces allowed"})
    assert odd.headers["x-request-id"] != "no spaces allowed"
