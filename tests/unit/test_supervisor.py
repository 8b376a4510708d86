"""The supervisor of `twinmesh up`: refuses taken ports, reports services that die
while starting, restarts a service that dies later, stops children by their pid."""

from __future__ import annotations

import socket
import sys
import threading
import time

import pytest

from twinmesh.supervisor import Service, Supervisor


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_service(port: int) -> Service:
    return Service(
        name="web",
        argv=[sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        url=f"http://127.0.0.1:{port}",
        health_url=f"http://127.0.0.1:{port}/",
        description="test server",
        port=port,
        port_setting="WEB_PORT",
    )


def test_a_taken_port_is_refused_before_anything_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        service = _http_service(taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="already in use.*WEB_PORT"):
            Supervisor([service], say=lambda _: None).start_all()
        assert service.process is None


def test_a_service_that_dies_while_starting_is_reported() -> None:
    service = Service(
        "broken",
        [sys.executable, "-c", "raise SystemExit(3)"],
        "http://127.0.0.1:1",
        "http://127.0.0.1:1/",
        "exits at once",
    )
    with pytest.raises(RuntimeError, match="exited with code 3"):
        Supervisor([service], say=lambda _: None, ready_timeout_s=20).start_all()


def test_restart_then_stop_by_pid() -> None:
    said: list[str] = []
    service = _http_service(_free_port())
    supervisor = Supervisor([service], say=said.append, ready_timeout_s=30)
    supervisor.start_all()
    assert any("web" in line for line in said)
    first = service.process
    assert first is not None
    watcher = threading.Thread(target=supervisor.watch, kwargs={"poll_s": 0.1}, daemon=True)
    watcher.start()
    first.kill()
    deadline = time.monotonic() + 20
    while service.process is first and time.monotonic() < deadline:
        time.sleep(0.1)
    assert service.process is not first and service.restarts == 1
    supervisor.stop_all()
    watcher.join(timeout=10)
    assert service.process is not None and service.process.poll() is not None
