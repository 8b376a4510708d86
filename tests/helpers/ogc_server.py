"""The OGC API as a separate process on 127.0.0.1, configured only through
``TWINMESH_*`` environment variables as an operator would (``python -m
twinmesh.ogc.app``, the code path of ``twinmesh serve ogc``)."""

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

__all__ = ["OgcServer", "running_ogc_server"]


@dataclass(frozen=True)
class OgcServer:
    url: str  # without a trailing slash
    pid: int
    log_path: Path


def ogc_env(settings: Settings, port: int) -> dict[str, str]:
    """The environment of a twinmesh process with these settings (data dir, store,
    database) and the OGC port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINMESH_")}
    env.update(
        TWINMESH_DATA_DIR=str(settings.data_dir),
        TWINMESH_CONFIG=str(settings.data_dir / "no-such-config.yaml"),
        TWINMESH_OGC__HOST="127.0.0.1",
        TWINMESH_OGC__PORT=str(port),
    )
    if settings.store_url:
        env["TWINMESH_STORE_URL"] = settings.store_url
    if settings.database_url:
        env["TWINMESH_DATABASE_URL"] = settings.database_url
    return env


@contextlib.contextmanager
def running_ogc_server(
    settings: Settings, *, port: int | None = None, timeout_s: float = 120
) -> Iterator[OgcServer]:
    """Start the OGC API over ``settings``' data dir, store and database, wait until it
    answers, stop it by its pid. ``port`` lets a test restart it on the same address."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = settings.data_dir / f"ogc-{port}.log"
    with serving_process(
        [sys.executable, "-m", "twinmesh.ogc.app"],
        env=ogc_env(settings, port),
        cwd=settings.data_dir,
        log_path=log_path,
        health_url=f"{url}/conformance",
        name="OGC server",
        timeout_s=timeout_s,
    ) as proc:
        yield OgcServer(url=url, pid=proc.pid, log_path=log_path)
