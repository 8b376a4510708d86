"""The retraining trigger end to end without Flower: observations ingested with
`twinmesh events ingest` that the demo model fits badly submit a `federated_training`
job (the entry-point job kind of twinmesh.federation) carrying the skill, threshold and
window; observations it fits well submit none; `twinmesh federation retrain-check`
prints the skill and the decision. (The job run by a worker against a real federation
is in test_federation.py, on its running federation.)"""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.flower import (
    federation_settings,
    gauged_regions,
    observations_csv,
    simulated_discharge,
    twinmesh_argv,
)
from twinmesh.core.engine import Engine
from twinmesh.core.retraining import JOB_KIND, TRIGGER_OWNER
from twinmesh.core.settings import Settings

TWIN = "delaware"


def hand_nse(sim: np.ndarray, obs: np.ndarray) -> float:
    """Per-location NSE, mean weighted by days (every location has the same days)."""
    scores = [
        1 - np.sum((s - o) ** 2) / np.sum((o - o.mean()) ** 2)
        for s, o in zip(sim, obs, strict=True)
    ]
    return float(np.mean(scores))


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        twinmesh_argv(*args),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def settings(demo_settings: Settings, tmp_path: Path) -> Settings:
    return federation_settings(demo_settings, tmp_path / "data")


def test_observations_the_model_fits_badly_submit_a_federated_training_job(
    settings: Settings, tmp_path: Path
) -> None:
    import os

    env = {
        **os.environ,
        "TWINMESH_DATA_DIR": str(settings.data_dir),
        "TWINMESH_STORE_URL": settings.resolved_store_url,
        "TWINMESH_DATABASE_URL": settings.resolved_database_url,
        "TWINMESH_CALIBRATION_REPETITIONS": str(settings.calibration_repetitions),
        # the demo twin's model is a calibrated GR4J: opted in to federated retraining
        "TWINMESH_FEDERATION__RETRAIN_TWINS": json.dumps([TWIN]),
        "TWINMESH_FEDERATION__RETRAIN_WINDOW_DAYS": "45",
        "TWINMESH_FEDERATION__RETRAIN_MIN_OBSERVATIONS": "40",
        "TWINMESH_FEDERATION__SUPERLINK": "127.0.0.1:9",  # the job only waits in the queue
        "TWINMESH_FEDERATION__INSECURE": "true",
    }
    engine = Engine(settings)
    try:
        pairs = gauged_regions(engine, TWIN)
        regions, gauges = [p[0] for p in pairs], [p[1] for p in pairs]
        last = engine.twin(TWIN).time_extent[1]
        # Fits well: the model's own discharge (+1 %), 30 days well before the end.
        good_start = last - timedelta(days=200)
        good = (
            simulated_discharge(engine, TWIN, regions, good_start, good_start + timedelta(days=29))
            * 1.01
        )
        csv = observations_csv(tmp_path / "good.csv", gauges, good_start, good)
        proc = cli(env, "events", "ingest", TWIN, str(csv))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "retraining: skill-ok" in proc.stdout, proc.stdout
        assert not [j for j in engine.jobs.list(twin=TWIN) if j.capability == JOB_KIND]

        # Fits badly: small, slowly falling discharges unrelated to the model's (the last
        # 30 days of the record).
        bad_start = last - timedelta(days=29)
        sim = simulated_discharge(engine, TWIN, regions, bad_start, last)
        bad = np.stack([0.2 + 0.01 * np.arange(30)[::-1] * (k + 1) for k in range(len(gauges))])
        bad = bad + 0.001 * np.arange(30)  # not constant
        csv = observations_csv(tmp_path / "bad.csv", gauges, bad_start, bad)
        proc = cli(env, "events", "ingest", TWIN, str(csv))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "retraining: submitted" in proc.stdout, proc.stdout
        jobs = [j for j in engine.jobs.list(twin=TWIN) if j.capability == JOB_KIND]
        assert len(jobs) == 1
        job = jobs[0]
        assert job.owner == TRIGGER_OWNER
        trigger = job.inputs["trigger"]
        expected = hand_nse(sim, np.round(bad, 6))
        assert expected < 0.5
        assert trigger["skill_nse"] == pytest.approx(expected, rel=1e-6)
        assert trigger["threshold_nse"] == 0.5
        assert trigger["observations"] == 30 * len(gauges)
        assert trigger["window"] == f"{last - timedelta(days=44)}/{last}"

        # For operators: the skill and the decision (a retraining is already queued).
        proc = cli(env, "federation", "retrain-check", TWIN, "--submit")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        checked = json.loads(proc.stdout)
        assert checked["action"] == "busy" and job.id in checked["message"]
        assert checked["skill"]["nse"] == pytest.approx(expected, rel=1e-6)
        assert {loc["location"] for loc in checked["skill"]["locations"]} == set(gauges)
        assert len([j for j in engine.jobs.list(twin=TWIN) if j.capability == JOB_KIND]) == 1
    finally:
        engine.close()
