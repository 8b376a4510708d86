"""A batch job that would load more than ``openeo.max_load_bytes`` is refused when it is
created, changed or started (400 ProcessGraphComplexity, from metadata only), not only
later in the worker (in-process, a small twin; no worker runs here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.helpers.openeo_server import build_small_twin
from twinmesh.core.settings import Settings
from twinmesh.core.store import DatacubeStore
from twinmesh.openeo.app import create_app

#: The small cube: 90 days x 12 x 16 cells x 3 bands of float32 = 207 360 bytes.
WHOLE = 90 * 12 * 16 * 3 * 4


def _settings(data_dir: Path, limit: int) -> Settings:
    settings = Settings(data_dir=data_dir)
    return settings.model_copy(
        update={"openeo": settings.openeo.model_copy(update={"max_load_bytes": limit})}
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = tmp_path_factory.mktemp("openeo-batch-limits")
    build_small_twin(DatacubeStore(Settings(data_dir=path).resolved_store_url))
    return path


def _graph(temporal: list[str] | None, *, filtered: bool = False) -> dict[str, Any]:
    nodes: dict[str, Any] = {
        "load": {
            "process_id": "load_collection",
            "arguments": {
                "id": "mini-grid",
                "spatial_extent": None,
                "temporal_extent": None if filtered else temporal,
            },
        }
    }
    last = "load"
    if filtered:  # as the official client sends it: a filter node after the load
        nodes["filter"] = {
            "process_id": "filter_temporal",
            "arguments": {"data": {"from_node": "load"}, "extent": temporal},
        }
        last = "filter"
    nodes["save"] = {
        "process_id": "save_result",
        "arguments": {"data": {"from_node": last}, "format": "netCDF"},
        "result": True,
    }
    return {"process": {"process_graph": nodes}}


def _refused(response: Any) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "ProcessGraphComplexity"
    assert "openeo.max_load_bytes" in body["message"]


@pytest.mark.parametrize("filtered", [False, True])
def test_a_job_too_large_is_refused_at_creation(data_dir: Path, filtered: bool) -> None:
    with TestClient(create_app(_settings(data_dir, WHOLE // 2))) as client:
        _refused(client.post("/jobs", json=_graph(None, filtered=filtered)))
        # ten days of the same cube are well under the limit
        small = _graph(["2020-01-01", "2020-01-11"], filtered=filtered)
        created = client.post("/jobs", json=small)
        assert created.status_code == 201, created.text
        job = created.headers["openeo-identifier"]
        # changing it to the whole cube is refused too, and the job keeps its graph
        _refused(client.patch(f"/jobs/{job}", json=_graph(None, filtered=filtered)))
        kept = client.get(f"/jobs/{job}").json()["process"]
        assert kept == small["process"]


def test_a_job_is_checked_again_when_started(data_dir: Path) -> None:
    with TestClient(create_app(_settings(data_dir, WHOLE * 2))) as roomy:
        created = roomy.post("/jobs", json=_graph(None))
        assert created.status_code == 201, created.text
        job = created.headers["openeo-identifier"]
    # the limit was lowered since: starting the job is refused, and it stays created
    with TestClient(create_app(_settings(data_dir, WHOLE // 2))) as strict:
        _refused(strict.post(f"/jobs/{job}/results"))
        assert strict.get(f"/jobs/{job}").json()["status"] == "created"
