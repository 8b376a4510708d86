"""The STAC API as a separate process on 127.0.0.1, configured only through
``TWINMESH_*`` environment variables as an operator would: what the tests and the
benchmark run against (``python -m twinmesh.stac.api.app``, the code path of ``serve``)."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.processes import serving_process

__all__ = ["StacServer", "free_port", "running_stac_server"]


@dataclass(frozen=True)
class StacServer:
    url: str  # without a trailing slash
    pid: int
    log_path: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_stac_server(
    data_dir: Path,
    backend: str,
    *,
    dsn: str | None = None,
    timeout_s: float = 120,
    workers: int = 1,
) -> Iterator[StacServer]:
    """Start the STAC API over ``data_dir``, wait until it answers, stop it by its pid.

    Raises RuntimeError with the end of the server's log if it exits or stays silent.
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINMESH_")}
    env.update(
        TWINMESH_DATA_DIR=str(data_dir),
        TWINMESH_CONFIG=str(data_dir / "no-such-config.yaml"),
        TWINMESH_STAC__BACKEND=backend,
        TWINMESH_STAC__HOST="127.0.0.1",
        TWINMESH_STAC__PORT=str(port),
        TWINMESH_STAC__WORKERS=str(workers),
    )
    if dsn:
        env["TWINMESH_STAC__PGSTAC_DSN"] = dsn
    log_path = data_dir / f"stac-{backend}-{port}.log"
    url = f"http://127.0.0.1:{port}"
    with serving_process(
        [sys.executable, "-m", "twinmesh.stac.api.app"],
        env=env,
        cwd=data_dir,
        log_path=log_path,
        health_url=f"{url}/_mgmt/ping",
        name=f"{backend} STAC server",
        timeout_s=timeout_s,
    ) as proc:
        yield StacServer(url=url, pid=proc.pid, log_path=log_path)
