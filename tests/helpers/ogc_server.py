"""The OGC API as a separate process on 127.0.0.1, configured only through
``TWINMESH_*`` environment variables as an operator would (``python -m
twinmesh.ogc.app``, the code path of ``twinmesh serve ogc``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

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
    log_path = settings.data_dir / f"ogc-{port}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "twinmesh.ogc.app"],
            cwd=settings.data_dir,
            env=ogc_env(settings, port),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the OGC server exited with {proc.returncode}:\n"
                    + log_path.read_text(errors="replace")[-4000:]
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/conformance", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the OGC server did not answer within {timeout_s}s:\n"
                    + log_path.read_text(errors="replace")[-4000:]
                )
            time.sleep(0.2)
        yield OgcServer(url=url, pid=proc.pid, log_path=log_path)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
