"""The gRPC API as a separate process on 127.0.0.1, configured only through
``TWINMESH_*`` environment variables as an operator would (``python -m
twinmesh.grpc.server``, the code path of ``twinmesh serve grpc``), ready once it answers
the standard gRPC health check."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.processes import serving_process
from tests.helpers.stac_server import free_port
from twinmesh.core.settings import Settings
from twinmesh.grpc.server import serving

__all__ = ["GrpcServer", "grpc_env", "running_grpc_server"]


@dataclass(frozen=True)
class GrpcServer:
    address: str  # "127.0.0.1:PORT"
    pid: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def grpc_env(settings: Settings, port: int) -> dict[str, str]:
    """The environment of a twinmesh process with these settings (data dir, store,
    database, gRPC limits) and the gRPC port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINMESH_")}
    env.update(
        TWINMESH_DATA_DIR=str(settings.data_dir),
        TWINMESH_CONFIG=str(settings.data_dir / "no-such-config.yaml"),
        TWINMESH_GRPC__HOST="127.0.0.1",
        TWINMESH_GRPC__PORT=str(port),
        TWINMESH_GRPC__MAX_MESSAGE_BYTES=str(settings.grpc.max_message_bytes),
        TWINMESH_GRPC__COMPUTE_THREADS=str(settings.grpc.compute_threads),
        TWINMESH_GRPC__SHUTDOWN_GRACE_SECONDS=str(settings.grpc.shutdown_grace_seconds),
        TWINMESH_GRPC__READ_CACHE_SECONDS=str(settings.grpc.read_cache_seconds),
        TWINMESH_MAX_RESULT_BYTES=str(settings.max_result_bytes),
    )
    if settings.store_url:
        env["TWINMESH_STORE_URL"] = settings.store_url
    if settings.database_url:
        env["TWINMESH_DATABASE_URL"] = settings.database_url
    return env


@contextlib.contextmanager
def running_grpc_server(
    settings: Settings, *, port: int | None = None, timeout_s: float = 120
) -> Iterator[GrpcServer]:
    """Start the gRPC API over ``settings``' data dir, store and database, wait until its
    health check says SERVING, stop it by its pid. ``port`` lets a test restart it on the
    same address."""
    port = port or free_port()
    address = f"127.0.0.1:{port}"
    log_path = settings.data_dir / f"grpc-{port}.log"
    with serving_process(
        [sys.executable, "-m", "twinmesh.grpc.server"],
        env=grpc_env(settings, port),
        cwd=settings.data_dir,
        log_path=log_path,
        ready=lambda: serving(address, timeout_s=1.0),
        name="gRPC server",
        timeout_s=timeout_s,
    ) as proc:
        yield GrpcServer(address=address, pid=proc.pid, log_path=log_path)
