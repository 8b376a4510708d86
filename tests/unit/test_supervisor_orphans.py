"""Children of `twinmesh up` die with their supervisor, even when it is SIGKILLed (or
OOM-killed) and cannot stop them: no orphan keeps serving on a port the next
`twinmesh up` needs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers.processes import process_running
from twinmesh.supervisor import Service, Supervisor, _die_with_parent, _port_free

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only"
)

_SUPERVISOR = """
import sys
from twinmesh.supervisor import Service, Supervisor

port = int(sys.argv[1])
service = Service(
    name="web",
    argv=[sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
    url=f"http://127.0.0.1:{port}",
    health_url=f"http://127.0.0.1:{port}/",
    description="test server",
    port=port,
)
supervisor = Supervisor([service], say=lambda _: None, ready_timeout_s=60)
supervisor.start_all()
print("child-pid", service.process.pid, flush=True)
supervisor.watch(poll_s=0.1)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _http_service(port: int) -> Service:
    return Service(
        name="web",
        argv=[sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        url=f"http://127.0.0.1:{port}",
        health_url=f"http://127.0.0.1:{port}/",
        description="test server",
        port=port,
    )


def test_children_die_when_the_supervisor_is_killed() -> None:
    port = _free_port()
    supervisor = subprocess.Popen(
        [sys.executable, "-c", _SUPERVISOR, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    child_pid = 0
    try:
        assert supervisor.stdout is not None
        for line in supervisor.stdout:  # the child's pid, once it answers
            if line.startswith("child-pid "):
                child_pid = int(line.split()[1])
                break
        assert child_pid, "the supervisor did not start its child"
        assert _answers(port) and process_running(child_pid)
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait(timeout=10)
        deadline = time.monotonic() + 2.0
        while (_answers(port) or process_running(child_pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _answers(port), f"an orphan still serves on port {port}"
        assert not process_running(child_pid), f"the child {child_pid} outlived its supervisor"
        assert _port_free("127.0.0.1", port)  # the next `twinmesh up` can take it
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        if child_pid and process_running(child_pid):
            os.kill(child_pid, signal.SIGKILL)


def test_a_child_started_from_a_thread_outlives_that_thread() -> None:
    """The death signal fires when the *thread* that forked exits: a service started
    (or restarted by ``watch``) from a thread that ends must keep running."""
    service = _http_service(_free_port())
    supervisor = Supervisor([service], say=lambda _: None, ready_timeout_s=30)
    starter = threading.Thread(target=supervisor.start_all)
    starter.start()
    starter.join(timeout=60)
    try:
        assert service.process is not None
        time.sleep(0.5)
        assert service.process.poll() is None, "the child died with the thread that forked it"
        assert _answers(service.port)
    finally:
        supervisor.stop_all()


def test_a_child_whose_parent_died_before_prctl_exits() -> None:
    """The race: the parent is gone before the child asked for the death signal (here
    simulated by expecting another parent pid); the child must not run on."""
    preexec = _die_with_parent(parent_pid=os.getpid() + 1_000_000)
    assert preexec is not None
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], preexec_fn=preexec
    )
    try:
        assert child.wait(timeout=10) == 1
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
