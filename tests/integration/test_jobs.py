"""Jobs end to end: submitted through core, run by `twinmesh worker` processes, a worker
SIGKILLed mid-run and the job finished by another, the result found with pystac-client
in the twin's results collection and opened with xarray — with the job database on
SQLite (and the embedded STAC API) and on PostgreSQL (and pgstac)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pystac_client import Client

from tests.helpers.postgres import TemporaryPostgres
from tests.helpers.stac_server import running_stac_server
from twinmesh.core.engine import Engine
from twinmesh.core.jobs import JobStatus
from twinmesh.core.settings import JobSettings, Settings, StacSettings
from twinmesh.stac.catalog import build_catalog

LEASE_S = 2.0


@pytest.fixture
def job_settings(
    demo_settings: Settings, tmp_path: Path, database_url: str, request: pytest.FixtureRequest
) -> Settings:
    """A data dir of its own (a copy of the demo store, its catalogue) and a fresh job DB."""
    store = tmp_path / "store"
    shutil.copytree(demo_settings.resolved_store_url, store)
    backend = "pgstac" if database_url.startswith("postgresql") else "embedded"
    dsn = None
    if backend == "pgstac":
        server: TemporaryPostgres = request.getfixturevalue("postgres_server")
        dsn = server.create_database(f"stac_{os.getpid()}_{int(time.time() * 1000) % 10**8}")
    settings = Settings(
        data_dir=tmp_path,
        store_url=str(store),
        database_url=database_url,
        jobs=JobSettings(lease_seconds=LEASE_S, poll_seconds=0.2),
        stac=StacSettings(backend=backend, pgstac_dsn=dsn, port=0),
    )
    build_catalog(Engine(settings).store, settings.catalog_dir)
    return settings


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINMESH_")}
    env.update(
        TWINMESH_CONFIG=str(settings.data_dir / "no-such.yaml"),
        TWINMESH_DATA_DIR=str(settings.data_dir),
        TWINMESH_STORE_URL=str(settings.store_url),
        TWINMESH_DATABASE_URL=str(settings.database_url),
        TWINMESH_JOBS__LEASE_SECONDS=str(settings.jobs.lease_seconds),
        TWINMESH_JOBS__POLL_SECONDS=str(settings.jobs.poll_seconds),
        TWINMESH_STAC__BACKEND=settings.stac.backend,
    )
    if settings.stac.pgstac_dsn:
        env["TWINMESH_STAC__PGSTAC_DSN"] = settings.stac.pgstac_dsn
    return env


def _worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "twinmesh.cli", "worker"],
            env=_env(settings),
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def workers(job_settings: Settings, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait(predicate, timeout: float, what: str):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_a_killed_workers_job_is_finished_by_another_and_published(
    job_settings: Settings, workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    engine = Engine(job_settings)
    log = tmp_path / "workers.log"
    with running_stac_server(
        job_settings.data_dir, job_settings.stac.backend, dsn=job_settings.stac.pgstac_dsn
    ) as server:
        # Big enough to be running when the kill comes: a hindcast of every issue day
        # of the Fulda record (seconds of work).
        job = engine.submit(
            "fulda", "verify", {"start": "1980-01-01", "end": "1988-12-01", "lead_days": 30}
        )
        assert job.status is JobStatus.ACCEPTED
        first = _worker(job_settings, log)
        workers.append(first)
        running = _wait(
            lambda: (j := engine.jobs.get(job.id)).status is JobStatus.RUNNING and j,
            60,
            "the first worker to claim the job",
        )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert engine.jobs.get(job.id).status is JobStatus.RUNNING  # orphaned, lease held

        second = _worker(job_settings, log)
        workers.append(second)
        done = _wait(
            lambda: (j := engine.jobs.get(job.id)).status.finished and j,
            180,
            "the second worker to finish the job",
        )
        assert done.status is JobStatus.SUCCESSFUL, log.read_text()[-3000:]
        assert done.attempts == 2 and done.worker != running.worker
        assert done.model_version == "1"
        assert done.result is not None and done.result["format"] == "json"

        client = Client.open(server.url)
        found = list(client.search(collections=["fulda-results"]).items())
        assert [i.id for i in found] == [job.id]
        item = found[0]
        assert item.properties["twinmesh:model_version"] == 1
        assert item.properties["twinmesh:capability"] == "verify"
        # The asset's href is a URL of the STAC API (the store served under /data).
        href = item.assets["result"].href
        assert href.startswith(f"{server.url}/data/fulda/results/"), href
        report = httpx.get(href, timeout=30).json()
        (point,) = report["points"]
        assert point["issue_days"] == 3258 and report["lead_days"] == 30
        counts = point["systems"]["esp"]
        assert (
            sum(counts[k] for k in ("hits", "misses", "false_alarms", "correct_negatives"))
            == (point["issue_days"])
        )


def test_cancel_dismisses_a_queued_job_and_no_worker_runs_it(
    job_settings: Settings, workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    engine = Engine(job_settings)
    job = engine.submit("fulda", "simulate", {"start": "1985-01-01", "end": "1985-12-31"})
    assert engine.jobs.cancel(job.id).status is JobStatus.DISMISSED
    later = engine.submit("fulda", "simulate", {"start": "1986-01-01", "end": "1986-01-31"})
    workers.append(_worker(job_settings, tmp_path / "w.log"))
    _wait(lambda: engine.jobs.get(later.id).status.finished, 120, "the later job")
    assert engine.jobs.get(later.id).status is JobStatus.SUCCESSFUL
    dismissed = engine.jobs.get(job.id)
    assert dismissed.status is JobStatus.DISMISSED and dismissed.attempts == 0
    assert dismissed.openeo_status == "canceled"
