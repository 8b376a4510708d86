"""Benchmark: the job store and `twinmesh worker`, on SQLite and on PostgreSQL.

Builds the Fulda demo twin (few calibration runs) in a temporary data dir, starts two
`twinmesh worker` processes per database, and measures

- submit → running latency: 20 jobs submitted one at a time to idle workers
  (the job row's `started - created`), p50 and p95;
- throughput: 40 jobs submitted at once, drained by 2 workers (jobs/s), each job
  writing its result to the store and publishing it to the STAC results collection;
- the baseline, in the same run: the same capability called directly in-process
  (`Engine.run`, no queue, no store write, no publication).

The job is a one-month `simulate` of the five Fulda regions: small, so the numbers are
the queue's and the publication's cost, not the model's.

Run: ``.venv/bin/python bench/jobs.py`` (about two minutes on 2 cores).
"""

from __future__ import annotations

import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.helpers.postgres import TemporaryPostgres  # noqa: E402
from twinmesh.core.demo import FULDA  # noqa: E402
from twinmesh.core.engine import Engine  # noqa: E402
from twinmesh.core.jobs import JobStatus  # noqa: E402
from twinmesh.core.settings import JobSettings, Settings  # noqa: E402
from twinmesh.stac.catalog import build_catalog  # noqa: E402

INPUTS = {"start": "1986-06-01", "end": "1986-06-30"}
LATENCY_JOBS = 20
THROUGHPUT_JOBS = 40
WORKERS = 2


def _workers(settings: Settings, log: Path) -> list[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINMESH_")}
    env.update(
        TWINMESH_CONFIG=str(settings.data_dir / "none.yaml"),
        TWINMESH_DATA_DIR=str(settings.data_dir),
        TWINMESH_DATABASE_URL=str(settings.database_url),
        TWINMESH_JOBS__POLL_SECONDS=str(settings.jobs.poll_seconds),
    )
    with open(log, "ab") as fh:
        return [
            subprocess.Popen(
                [sys.executable, "-m", "twinmesh.cli", "worker"],
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
            for _ in range(WORKERS)
        ]


def _wait_all(engine: Engine, ids: list[str], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        pending = {i for i in pending if not engine.jobs.get(i).status.finished}
        if pending:
            time.sleep(0.05)
    if pending:
        raise RuntimeError(f"{len(pending)} jobs did not finish")
    failed = [i for i in ids if engine.jobs.get(i).status is not JobStatus.SUCCESSFUL]
    if failed:
        raise RuntimeError(f"jobs failed: {engine.jobs.get(failed[0]).error}")


def measure(settings: Settings, label: str) -> dict[str, float | str]:
    engine = Engine(settings)
    engine.db.migrate()
    procs = _workers(settings, settings.data_dir / f"workers-{label}.log")
    try:
        time.sleep(3)  # workers import and connect
        warm = engine.submit("fulda", "simulate", INPUTS)
        _wait_all(engine, [warm.id])
        latencies = []
        for _ in range(LATENCY_JOBS):
            job = engine.submit("fulda", "simulate", INPUTS)
            _wait_all(engine, [job.id])
            done = engine.jobs.get(job.id)
            assert done.started is not None
            latencies.append((done.started - done.created).total_seconds())
        started = time.perf_counter()
        ids = [engine.submit("fulda", "simulate", INPUTS).id for _ in range(THROUGHPUT_JOBS)]
        _wait_all(engine, ids)
        seconds = time.perf_counter() - started
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)
        engine.close()
    q = statistics.quantiles(latencies, n=20)
    return {
        "database": label,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * q[18],
        "jobs_per_s": THROUGHPUT_JOBS / seconds,
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="twinmesh-bench-jobs-") as tmp:
        data = Path(tmp)
        base = Settings(
            data_dir=data,
            database_url=f"sqlite:///{data / 'jobs.sqlite'}",
            jobs=JobSettings(poll_seconds=0.1),
        )
        print("building the Fulda demo twin (200 calibration runs)...", flush=True)
        engine = Engine(base)
        FULDA.build_into(engine.store, seed=base.demo_seed, repetitions=200)
        build_catalog(engine.store, base.catalog_dir)

        # Baseline: the same capability called directly, in this process.
        engine.run("fulda", "simulate", INPUTS)
        started = time.perf_counter()
        for _ in range(THROUGHPUT_JOBS):
            engine.run("fulda", "simulate", INPUTS)
        direct = THROUGHPUT_JOBS / (time.perf_counter() - started)
        engine.close()

        rows = [measure(base, "SQLite")]
        with TemporaryPostgres(require_postgis=False) as pg:
            pg_settings = base.model_copy(update={"database_url": pg.dsn})
            rows.append(measure(pg_settings, "PostgreSQL"))

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(
        f"jobs: one-month simulate of 5 regions; {WORKERS} worker processes; "
        "each job writes Zarr + publishes a STAC item (embedded index)"
    )
    print(
        f"{'database':<11} {'submit→running p50':>19} {'p95':>8} {'jobs/s':>8} "
        f"{'direct calls/s':>15} {'jobs/s ÷ direct':>16}"
    )
    for r in rows:
        print(
            f"{r['database']:<11} {r['p50_ms']:>16.0f} ms {r['p95_ms']:>5.0f} ms "
            f"{r['jobs_per_s']:>8.2f} {direct:>15.2f} {r['jobs_per_s'] / direct:>16.2f}"
        )
    print(f"peak RSS of the benchmark process: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
