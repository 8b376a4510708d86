"""`twinmesh up` on the scale path: the same mesh with the catalogue in pgstac, chosen
only by settings (TWINMESH_STAC__BACKEND / __PGSTAC_DSN), as an operator would."""

from __future__ import annotations

import signal

import pytest
from mesh import start_up
from pystac_client import Client

from tests.helpers.postgres import TemporaryPostgres
from tests.helpers.stac_server import free_port
from twinmesh.core.settings import Settings

pytestmark = pytest.mark.pgstac


def test_up_serves_the_demo_catalogue_from_pgstac(demo_settings: Settings) -> None:
    port = free_port()
    with TemporaryPostgres() as postgres:
        env = {
            "TWINMESH_STAC__BACKEND": "pgstac",
            "TWINMESH_STAC__PGSTAC_DSN": postgres.dsn,
            "TWINMESH_STAC__PORT": str(port),
            "TWINMESH_OGC__PORT": str(free_port()),
            "TWINMESH_GRPC__PORT": str(free_port()),
            "TWINMESH_OPENEO__PORT": str(free_port()),
        }
        proc, lines = start_up(demo_settings.data_dir, "--no-init", env=env, timeout_s=180)
        try:
            text = "".join(lines)
            assert "twinmesh is up" in text, text
            assert "pgstac backend" in text
            client = Client.open(f"http://127.0.0.1:{port}")
            found = {
                i.id
                for i in client.search(
                    bbox=[9.5, 50.5, 9.9, 50.9], datetime="1985-06-01", collections=["fulda-spi-3"]
                ).items()
            }
            assert found == {"fulda-spi-3"}
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0, out
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
