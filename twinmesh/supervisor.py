"""``twinmesh up``: each service as its own process, supervised.

Every service is started with the same Python interpreter as ``twinmesh serve NAME``,
polled until its health URL answers, restarted (a few times, with back-off) if it
dies, and stopped by its own process id on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from twinmesh.core.settings import Settings

__all__ = ["Service", "mesh_services", "Supervisor"]


@dataclass
class Service:
    """A process of the mesh: how to start it and how to know it is ready."""

    name: str
    argv: list[str]
    url: str
    health_url: str
    description: str
    host: str = "127.0.0.1"
    port: int = 0
    #: Setting that moves the service to another port, named in the port-in-use error.
    port_setting: str = ""
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)


def mesh_services(settings: Settings) -> list[Service]:
    """The services that exist so far; later capabilities add theirs here."""
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
    ]


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
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

    def _start(self, service: Service) -> None:
        service.process = subprocess.Popen(service.argv, env=self.env)
        service.started_at = time.monotonic()

    def _healthy(self, service: Service) -> bool:
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
                        f"run `twinmesh serve {service.name}` to see why"
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
