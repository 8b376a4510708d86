"""``twinmesh up``: each service as its own process, supervised.

Every service is started with the same Python interpreter as ``twinmesh serve NAME``,
polled until its health URL answers, restarted (a few times, with back-off) if it
dies, and stopped by its own process id on Ctrl-C or SIGTERM.

Children die with the supervisor even when it cannot stop them (SIGKILL, the OOM
killer): on Linux each child asks the kernel for SIGTERM when its parent goes
(``PR_SET_PDEATHSIG``), so no orphan keeps a port the next ``twinmesh up`` needs.
Each child runs in its own session, so Ctrl-C reaches only the supervisor, which
then stops them in order.
"""

from __future__ import annotations

import ctypes
import functools
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import httpx

from twinmesh.core.settings import Settings

__all__ = ["Service", "mesh_services", "Supervisor"]


@dataclass
class Service:
    """A process of the mesh: how to start it and how to know it is ready."""

    name: str
    argv: list[str]
    url: str
    #: URL that answers once the service is ready: ``http(s)://`` (any status below
    #: 500) or ``grpc://host:port`` (the standard gRPC health check says SERVING); None
    #: for a process without a port (a worker), ready once it has run for a second.
    health_url: str | None
    description: str
    host: str = "127.0.0.1"
    port: int = 0
    #: Setting that moves the service to another port, named in the port-in-use error.
    port_setting: str = ""
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)


def mesh_services(settings: Settings) -> list[Service]:
    """The services that exist so far (the STAC API, the OGC API, the gRPC API, the
    openEO API and the job workers); later adapters add theirs here."""
    base = settings.stac.base_url()
    return [
        Service(
            name="stac",
            argv=[sys.executable, "-m", "twinmesh.cli", "serve", "stac"],
            url=base,
            health_url=f"{base}/_mgmt/ping" if settings.stac.backend == "pgstac" else f"{base}/",
            description=f"STAC API 1.0 ({settings.stac.backend} backend)",
            host=settings.stac.host,
            port=settings.stac.port,
            port_setting="TWINMESH_STAC__PORT",
        ),
        Service(
            name="ogc",
            argv=[sys.executable, "-m", "twinmesh.cli", "serve", "ogc"],
            url=settings.ogc.base_url(),
            health_url=f"{settings.ogc.base_url()}/conformance",
            description="OGC API (pygeoapi): Processes, EDR, Coverages, Features",
            host=settings.ogc.host,
            port=settings.ogc.port,
            port_setting="TWINMESH_OGC__PORT",
        ),
        Service(
            name="grpc",
            argv=[sys.executable, "-m", "twinmesh.cli", "serve", "grpc"],
            url=settings.grpc.address(),
            health_url=f"grpc://{settings.grpc.host}:{settings.grpc.port}",
            description="gRPC twin API (twinmesh.v1.TwinService, reflection)",
            host=settings.grpc.host,
            port=settings.grpc.port,
            port_setting="TWINMESH_GRPC__PORT",
        ),
        Service(
            name="openeo",
            argv=[sys.executable, "-m", "twinmesh.cli", "serve", "openeo"],
            url=settings.openeo.base_url(),
            health_url=f"{settings.openeo.base_url()}/.well-known/openeo",
            description="openEO API 1.2 (collections, process graphs, batch jobs)",
            host=settings.openeo.host,
            port=settings.openeo.port,
            port_setting="TWINMESH_OPENEO__PORT",
        ),
        *(
            Service(
                name=f"worker-{n}" if settings.jobs.workers > 1 else "worker",
                argv=[sys.executable, "-m", "twinmesh.cli", "worker"],
                url=settings.resolved_database_url.split("://", 1)[0] + " job store",
                health_url=None,
                description="runs queued jobs; results to the store and STAC",
            )
            for n in range(1, settings.jobs.workers + 1)
        ),
    ]


#: prctl(2) option: the signal a process gets when its parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Any:
    """libc's prctl, resolved in the parent: a forked child only calls it."""
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when ``parent_pid`` dies.

    Linux only (None elsewhere). The kernel sends the signal when the *thread* that
    forked the child exits, so children must be forked from a thread that lives as
    long as the supervisor (see ``_Forker``). If the parent died before the child's
    prctl ran, the child is already an orphan and exits at once.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = _prctl()

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(errno)}")
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


class _Forker:
    """Starts processes from a thread that lives as long as the supervisor's process.

    From the main thread it forks directly; other threads (a ``watch`` loop run in a
    thread) hand the fork to one daemon thread, because a child's death signal fires
    when the thread that forked it exits, not the process.
    """

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[
            tuple[list[str], dict[str, Any], Future[subprocess.Popen[bytes]]]
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        if threading.current_thread() is threading.main_thread():
            return subprocess.Popen(argv, **kwargs)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="twinmesh-forker", daemon=True
                )
                self._thread.start()
        done: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((argv, kwargs, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            argv, kwargs, done = self._requests.get()
            try:
                done.set_result(subprocess.Popen(argv, **kwargs))
            except BaseException as exc:  # handed to the caller's thread
                done.set_exception(exc)


def _port_free(host: str, port: int) -> bool:
    """Whether a service could listen on ``host:port`` now.

    Binds as the servers do, with SO_REUSEADDR on POSIX: connections of a stopped
    server waiting out TIME_WAIT do not keep its port from the next ``twinmesh up``.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class Supervisor:
    """Starts, watches and stops the mesh's processes."""

    def __init__(
        self,
        services: list[Service],
        *,
        env: dict[str, str] | None = None,
        say: Callable[[str], None] = print,
        ready_timeout_s: float = 120.0,
        max_restarts: int = 3,
    ) -> None:
        self.services = services
        self.env = {**os.environ, **(env or {})}
        self.say = say
        self.ready_timeout_s = ready_timeout_s
        self.max_restarts = max_restarts
        self._stopping = False
        self._forker = _Forker()

    def _start(self, service: Service) -> None:
        service.process = self._forker.popen(
            service.argv,
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )
        service.started_at = time.monotonic()

    def _healthy(self, service: Service) -> bool:
        if service.health_url is None:
            return time.monotonic() - service.started_at > 1.0
        if service.health_url.startswith("grpc://"):
            from twinmesh.grpc.server import serving

            return serving(service.health_url.removeprefix("grpc://"), timeout_s=2.0)
        try:
            return httpx.get(service.health_url, timeout=2.0).status_code < 500
        except httpx.HTTPError:
            return False

    def start_all(self) -> None:
        """Start every service and wait until all answer; raise if one cannot start."""
        for service in self.services:
            if service.port and not _port_free(service.host, service.port):
                raise RuntimeError(
                    f"port {service.port} on {service.host} is already in use (another "
                    f"`twinmesh up`?): stop that process or set {service.port_setting} "
                    "to a free port"
                )
        for service in self.services:
            self._start(service)
        deadline = time.monotonic() + self.ready_timeout_s
        pending = list(self.services)
        while pending:
            for service in list(pending):
                assert service.process is not None
                code = service.process.poll()
                if code is not None:
                    self.stop_all()
                    raise RuntimeError(
                        f"service {service.name} exited with code {code} while starting; "
                        f"run `{_command_of(service)}` to see why"
                    )
                if self._healthy(service):
                    self.say(f"  {service.name:<8} {service.url}  ({service.description})")
                    pending.remove(service)
            if pending and time.monotonic() > deadline:
                self.stop_all()
                names = ", ".join(s.name for s in pending)
                raise RuntimeError(f"not ready after {self.ready_timeout_s:.0f}s: {names}")
            if pending:
                time.sleep(0.2)

    def watch(self, poll_s: float = 0.5) -> None:
        """Restart services that die, until stopped (Ctrl-C / SIGTERM)."""
        while not self._stopping:
            for service in self.services:
                assert service.process is not None
                code = service.process.poll()
                if code is None or self._stopping:
                    continue
                if service.restarts >= self.max_restarts:
                    self.say(
                        f"{service.name} died (code {code}) {service.restarts} times; stopping"
                    )
                    self.stop_all()
                    raise RuntimeError(f"service {service.name} keeps failing")
                service.restarts += 1
                delay = 2 ** (service.restarts - 1)
                self.say(
                    f"{service.name} exited (code {code}); restart {service.restarts} in {delay}s"
                )
                time.sleep(delay)
                self._start(service)
            time.sleep(poll_s)

    def stop_all(self, timeout_s: float = 10.0) -> None:
        """Terminate every child by its own pid; kill those that do not stop in time."""
        self._stopping = True
        for service in self.services:
            if service.process is not None and service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for service in self.services:
            if service.process is None:
                continue
            try:
                service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()


def _command_of(service: Service) -> str:
    """The command a user runs to start ``service`` in the foreground."""
    return " ".join(["twinmesh", *service.argv[3:]]) if len(service.argv) > 3 else service.name
