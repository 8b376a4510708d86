"""Federated training on Flower's deployment engine: 1 SuperLink + 3 SuperNodes as
separate processes on 127.0.0.1, driven by the twinmesh CLI; the trained model enters the
registry and `forecast` runs with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.flower import (
    Federation,
    export_partners,
    federation_settings,
    gauged_regions,
    observations_csv,
    running_federation,
    twinmesh_argv,
)
from twinmesh.core.engine import Engine
from twinmesh.core.jobs import JobStatus
from twinmesh.core.retraining import JOB_KIND
from twinmesh.core.settings import Settings
from twinmesh.federation.app.twinmesh_fl.model import MLPRunoffModel
from twinmesh.stac.models import model_item_id

PARTNERS = ["delaware-nj", "delaware-ny", "fulda"]


@pytest.fixture(scope="module")
def fed_settings(demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return federation_settings(demo_settings, tmp_path_factory.mktemp("federation-db"))


@pytest.fixture(scope="module")
def partner_dirs(
    fed_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    return export_partners(fed_settings, tmp_path_factory.mktemp("partners"), PARTNERS)


@pytest.fixture(scope="module")
def federation(
    fed_settings: Settings, partner_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Federation]:
    with running_federation(
        tmp_path_factory.mktemp("flower"),
        fed_settings,
        {"TWINMESH_FEDERATION__ROUND_TIMEOUT_SECONDS": "45"},
        tls=True,  # TLS and SuperNode authentication, as by default
    ) as fed:
        for name in PARTNERS:
            fed.join(name, partner_dirs[name])
        fed.wait_for_nodes(len(PARTNERS))
        yield fed


def _run(fed: Federation, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        twinmesh_argv("federation", "run", *fed.security(), "--superlink", fed.address, *args),
        env=fed.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_three_rounds_register_a_model_that_forecast_runs(
    federation: Federation, fed_settings: Settings, tmp_path: Path
) -> None:
    proc = _run(
        federation,
        "--twin", "delaware", "--rounds", "3", "--min-nodes", "3", "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr + federation.log("superlink")[-3000:]
    result = json.loads(proc.stdout)
    assert result["rounds"] == 3
    assert sorted(result["partners"]) == sorted(PARTNERS)
    assert sorted(result["validation"]) == sorted(PARTNERS)

    engine = Engine(fed_settings)
    try:
        model = engine.models.get("delaware")  # current
        assert model.kind == "federated-mlp"
        fedprov = model.provenance.federated
        assert fedprov is not None and fedprov.rounds == 3
        assert set(fedprov.partners) == set(PARTNERS) and all(fedprov.partners.values())
        settings = model.provenance.method_settings
        assert len(str(settings["app_bundle_sha256"])) == 64
        assert {f"validation_nse.{p}" for p in PARTNERS} <= set(settings)
        # published: an item of the twin's models collection, with the MLM extension
        assert result["stac_items"] == [model_item_id(model)]
        item_path = fed_settings.catalog_dir / "delaware-models" / model_item_id(model)
        item = json.loads((item_path / f"{model_item_id(model)}.json").read_text())
        assert any("mlm" in ext for ext in item["stac_extensions"])
        assert item["properties"]["mlm:architecture"] == "federated-mlp"
        assert item["properties"]["twinmesh:current"] is True
        assert item["properties"]["twinmesh:provenance"]["federated"]["rounds"] == 3
        forecast = engine.run("delaware", "forecast", {"issued": "1980-06-01", "lead_days": 5})
        assert forecast.data.attrs["model"] == "federated-mlp"
        assert forecast.model_version == model.version
        q = forecast.data["discharge_m3s"].values
        assert q.shape[0] >= 1 and np.isfinite(q).all() and (q >= 0).all() and q.max() > 0
    finally:
        engine.close()

    # Only parameters and metrics left the sites: every array each node sent has the
    # shape of a model parameter, and no message carried more bytes than the parameters.
    shapes = sorted(tuple(a.shape) for a in MLPRunoffModel().get_parameters())
    param_bytes = sum(a.nbytes for a in MLPRunoffModel().get_parameters())
    for name in PARTNERS:
        sent = [e for e in federation.audit(name) if e["event"] == "sent"]
        assert {e["message"] for e in sent} == {"train", "evaluate"}
        assert len([e for e in sent if e["message"] == "train"]) == 3
        for entry in sent:
            arrays = entry["arrays"]
            assert isinstance(arrays, list)
            if entry["message"] == "train":
                assert sorted(tuple(a["shape"]) for a in arrays) == shapes
            else:
                assert arrays == []
            # serialised arrays: the raw parameters plus a small header each
            assert sum(a["bytes"] for a in arrays) <= param_bytes + 256 * len(arrays)
            assert all(len(a["sha256"]) == 64 for a in arrays)
            metrics = entry["metrics"]
            assert isinstance(metrics, dict)
            assert all(isinstance(v, int | float) for rec in metrics.values() for v in rec.values())
            assert entry["configs"] == {"partner": {"name": name}}


def test_a_run_short_of_nodes_ends_at_its_deadline(federation: Federation, tmp_path: Path) -> None:
    proc = _run(
        federation, "--rounds", "1", "--min-nodes", "5", "--deadline", "20",
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["status"] == "failed"
    assert "deadline" in result["reason"] and "of the 5 required node(s)" in result["reason"]


def test_a_node_refuses_an_app_bundle_it_did_not_allow(
    fed_settings: Settings, partner_dirs: dict[str, Path], tmp_path: Path
) -> None:
    with running_federation(tmp_path / "flower", fed_settings) as fed:
        fed.join("strict", partner_dirs["delaware-nj"], allow_app="0" * 64)
        fed.wait_for_nodes(1)
        proc = _run(fed, "--rounds", "1", "--min-nodes", "1", "--deadline", "120",
                    "--out", str(tmp_path / "run"))  # fmt: skip
        assert proc.returncode == 1, proc.stdout
        assert "only 0 node(s) answered" in json.loads(proc.stdout)["reason"]
        audit = fed.audit("strict")
        assert audit and all(e["event"] == "refused" for e in audit)
        assert audit[0]["reason"] == "app bundle not allowed"


def _trained(fed: Federation, name: str) -> int:
    """Train replies the node sent (its audit log)."""
    return len([e for e in fed.audit(name) if e["event"] == "sent" and e["message"] == "train"])


def _wait(what: str, ok: Callable[[], bool], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_join_restarts_its_supernode_and_a_triggered_retraining_runs_in_a_worker(
    federation: Federation, fed_settings: Settings, tmp_path: Path
) -> None:
    # -- `join`'s own restart path: its SuperNode exits; join starts it again and the
    # node rejoins (the SuperLink lists it online again, activated after the kill).
    name = "delaware-nj"
    child = federation.supernode_pid(name)
    assert child is not None, federation.log(name)[-2000:]
    online_at = {str(n["node-id"]): str(n["online-at"]) for n in federation.listed_nodes()}
    os.kill(child, signal.SIGKILL)
    _wait(
        "join to restart its SuperNode",
        lambda: federation.supernode_pid(name) not in (None, child),
    )
    log = federation.supervisor_log(name)
    assert "twinmesh: exited with -9" in log and "twinmesh: restarting in 1 s" in log
    assert log.count("twinmesh: starting") >= 2
    _wait(
        "the restarted node to be online again",
        lambda: any(
            n.get("status") == "online"
            and str(n["online-at"]) > online_at.get(str(n["node-id"]), "")
            for n in federation.listed_nodes()
        ),
    )
    federation.wait_for_nodes(len(PARTNERS))
    train_before = _trained(federation, name)

    # -- the retraining trigger: observations the model fits badly submit a
    # federated_training job; a worker runs it on this federation (1 round, every node).
    assert federation.certs is not None
    env = {
        **federation.env(),
        "TWINMESH_FEDERATION__RETRAIN_TWINS": json.dumps(["delaware"]),
        "TWINMESH_FEDERATION__RETRAIN_WINDOW_DAYS": "30",
        "TWINMESH_FEDERATION__RETRAIN_MIN_OBSERVATIONS": "20",
        "TWINMESH_FEDERATION__RETRAIN_ROUNDS": "1",
        "TWINMESH_FEDERATION__RETRAIN_MIN_NODES": str(len(PARTNERS)),
        "TWINMESH_FEDERATION__SUPERLINK": federation.address,
        "TWINMESH_FEDERATION__CERTS": str(federation.certs),
        "TWINMESH_FEDERATION__DEADLINE_SECONDS": "300",
        "TWINMESH_FEDERATION__ROUND_TIMEOUT_SECONDS": "60",
    }
    engine = Engine(fed_settings)
    try:
        pairs = gauged_regions(engine, "delaware")
        last = engine.twin("delaware").time_extent[1]
        start = last - timedelta(days=14)
        bad = np.stack([0.3 + 0.02 * np.arange(15)[::-1] * (k + 1) for k in range(len(pairs))])
        csv = observations_csv(tmp_path / "bad.csv", [g for _r, g in pairs], start, bad)
        ingest = subprocess.run(
            twinmesh_argv("events", "ingest", "delaware", str(csv)),
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert ingest.returncode == 0, ingest.stdout + ingest.stderr
        assert "retraining: submitted" in ingest.stdout, ingest.stdout
        (job,) = [j for j in engine.jobs.list(twin="delaware") if j.capability == JOB_KIND]
        skill = job.inputs["trigger"]["skill_nse"]
        assert skill < 0.5

        worker = subprocess.run(
            twinmesh_argv("worker", "--once"),
            env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert worker.returncode == 0, worker.stdout + worker.stderr
        job = engine.jobs.get(job.id)
        assert job.status is JobStatus.SUCCESSFUL, (job.error, worker.stderr[-3000:])
        model = engine.models.get("delaware")  # current: the retrained version
        assert job.model_version == str(model.version)
        assert model.kind == "federated-mlp"
        assert model.provenance.federated is not None and model.provenance.federated.rounds == 1
        settings = model.provenance.method_settings
        assert settings["trigger.skill_nse"] == pytest.approx(skill)
        assert settings["trigger.threshold_nse"] == 0.5
        assert settings["trigger.window"] == f"{last - timedelta(days=29)}/{last}"
        assert "Retraining triggered" in model.provenance.notes
        # the log says why it ran: the job's events carry its message
        messages = [
            str(e.payload.get("message"))
            for e in engine.log.replay(0, kinds="job", twin="delaware", limit=10_000)
            if e.payload.get("id") == job.id
        ]
        assert any("retraining triggered" in m and "below 0.5" in m for m in messages), messages
    finally:
        engine.close()
    # the restarted node trained in that round
    assert _trained(federation, name) == train_before + 1
