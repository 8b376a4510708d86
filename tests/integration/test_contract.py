"""The core contract on the real demo twins: a new model version changes what forecast
returns and the result names it; roll-back restores the old output; a warning issued by
a job reaches a subscriber within a second; results encode in every declared format."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import numpy as np
import pytest
import xarray as xr

from twinmesh.core.engine import Engine
from twinmesh.core.errors import CapabilityNotOffered, TooLarge
from twinmesh.core.models import ModelProvenance
from twinmesh.core.worker import Worker

FORECAST = {"issued": "1985-03-01", "members": 5, "lead_days": 5}


def test_a_new_version_changes_the_forecast_and_roll_back_restores_it(
    demo_engine: Engine,
) -> None:
    twin = demo_engine.twin("fulda")
    before = demo_engine.run("fulda", "forecast", FORECAST)
    assert before.model_version == 1
    assert before.data.attrs["model_version"] == 1
    v1 = demo_engine.models.get("fulda")
    wetter = {**v1.parameters, "x1_mm": v1.parameters["x1_mm"] * 0.5}
    v2 = demo_engine.models.register(
        "fulda",
        kind=v1.kind,
        parameters=wetter,
        skill=v1.skill,
        provenance=ModelProvenance(
            training_data=[{"dataset": "forcing"}], method="hand-tuned for the test"
        ),
    )
    # Registered, not yet approved: forecast still runs version 1.
    assert demo_engine.run("fulda", "forecast", FORECAST).model_version == 1
    demo_engine.models.approve("fulda", v2.version, reason="test")
    after = demo_engine.run("fulda", "forecast", FORECAST)
    assert after.model_version == v2.version == 2
    assert not np.allclose(after.data["discharge_m3s"], before.data["discharge_m3s"])
    demo_engine.models.roll_back("fulda", reason="test")
    again = demo_engine.run("fulda", "forecast", FORECAST)
    assert again.model_version == 1
    np.testing.assert_array_equal(again.data["discharge_m3s"], before.data["discharge_m3s"])
    # An explicit version runs that version whatever is current.
    pinned = demo_engine.run("fulda", "forecast", {**FORECAST, "model_version": 2})
    np.testing.assert_array_equal(pinned.data["discharge_m3s"], after.data["discharge_m3s"])
    assert twin.id == "fulda"


def test_a_warning_issued_by_a_job_reaches_a_subscriber_within_a_second(
    demo_engine: Engine,
) -> None:
    arrived: list[tuple[float, object]] = []
    stop = threading.Event()
    start_seq = demo_engine.log.latest_sequence()

    def listen() -> None:
        for event in demo_engine.log.subscribe(start_seq, kinds=["warning"], stop=stop):
            arrived.append((time.time(), event))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    job = demo_engine.submit(
        "fulda", "warnings", {"issued": "1987-06-01", "members": 5, "lead_days": 5}
    )
    assert Worker(demo_engine).run_once()
    deadline = time.time() + 5
    while len(arrived) < 5 and time.time() < deadline:
        time.sleep(0.02)
    stop.set()
    listener.join(timeout=5)
    assert len(arrived) == 6, arrived  # five sub-basins and the whole basin
    for when, event in arrived:
        assert event.payload["job_id"] == job.id
        assert event.payload["model_version"] == "1"
        assert when - event.recorded.timestamp() < 1.0
    assert demo_engine.jobs.get(job.id).status.value == "successful"


def test_results_encode_in_every_declared_format(demo_engine: Engine, tmp_path) -> None:
    coverage = demo_engine.run("fulda", "simulate", {"start": "1986-01-01", "end": "1986-01-31"})
    assert [f.name for f in coverage.formats()] == ["zarr", "netcdf", "json"]
    nc = tmp_path / "sim.nc"
    nc.write_bytes(coverage.encode("netcdf").content)
    back = xr.open_dataset(nc, engine="h5netcdf")
    np.testing.assert_allclose(back["discharge_m3s"], coverage.data["discharge_m3s"])
    assert back.attrs["twinmesh_model_version"] == 1
    zarr_path = coverage.write(tmp_path / "sim.zarr")
    assert xr.open_zarr(zarr_path, consolidated=False)["discharge_m3s"].shape == (31, 6)
    features = demo_engine.run("fulda", "warnings", {"issued": "1987-06-01", "members": 5})
    doc = features.to_json()
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 6
    assert doc["properties"]["twinmesh:model_version"] == 1


def test_too_large_is_refused_before_any_read_and_capabilities_are_enforced(
    demo_engine: Engine,
) -> None:
    small = demo_engine.settings.model_copy(update={"max_result_bytes": 10_000})
    engine = Engine(small, store=demo_engine.store)
    with pytest.raises(TooLarge) as info:
        engine.run("fulda", "forecast", {"members": 200, "lead_days": 30})
    assert "the limit is" in info.value.message and info.value.status == 413
    limited = demo_engine.twin("fulda").model_copy(update={"capabilities": ["subset"]})
    with pytest.raises(CapabilityNotOffered, match="offers: subset"):
        demo_engine.capability(limited, "forecast")
    assert datetime.now(UTC)
