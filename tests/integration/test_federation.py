"""Federated training on Flower's deployment engine: 1 SuperLink + 3 SuperNodes as
separate processes on 127.0.0.1, driven by the twinmesh CLI; the trained model enters the
registry and `forecast` runs with it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.flower import (
    Federation,
    export_partners,
    federation_settings,
    running_federation,
    twinmesh_argv,
)
from twinmesh.core.engine import Engine
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
