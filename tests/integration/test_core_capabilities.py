"""The twin core on the real demo twin: capabilities, typed errors, an untouched store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from twinmesh.core import errors
from twinmesh.core.capabilities import CAPABILITIES, forecast, simulate, subset, warnings
from twinmesh.core.engine import Engine
from twinmesh.core.store import DatacubeStore


def _tree_digest(root: str) -> str:
    h = hashlib.sha256()
    for path in sorted(Path(root).rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_twin_document_has_model_skill_and_regions(demo_store: DatacubeStore) -> None:
    twin = demo_store.read_twin("fulda")
    model = twin.model("gr4j")
    assert model.kind == "GR4J-CemaNeige"
    assert model.skill["validation"]["kge"] > 0.6
    assert model.skill["calibration"]["period"].startswith("1980")
    # Five sub-basins, and the whole basin the outlet gauge measures.
    subbasins = [r for r in twin.regions if r.outlet_gauge is None]
    (outlet,) = [r for r in twin.regions if r.outlet_gauge is not None]
    assert len(subbasins) == 5 and outlet.outlet_gauge == "grebenau"
    assert abs(sum(r.area_km2 for r in subbasins) - 2976.41) < 0.1
    assert outlet.area_km2 == pytest.approx(2976.41)
    assert set(twin.capabilities) <= set(CAPABILITIES)


def test_forcing_grid_keeps_the_observed_basin_mean(demo_store: DatacubeStore) -> None:
    from twinmesh.core.demo.fulda import load_fulda_record
    from twinmesh.core.geo import region_mask

    twin = demo_store.read_twin("fulda")
    cube = demo_store.open("fulda", "forcing")
    mask = np.zeros((cube.sizes["y"], cube.sizes["x"]), dtype=bool)
    for r in twin.regions:
        mask |= region_mask(r, cube["x"].values, cube["y"].values)
    basin = cube["precipitation"].values[:, mask].mean(axis=1)
    np.testing.assert_allclose(basin, load_fulda_record().precipitation_mm, rtol=1e-4, atol=1e-4)
    assert cube["precipitation"].dims == ("t", "y", "x")
    assert "spatial_ref" in cube.coords
    assert cube.attrs["generated"].startswith("yes")


#: An issue day inside each demo twin's record (a year after its start).
ISSUE_DAY = {"fulda": "1987-06-01", "delaware": "1980-06-01"}


@pytest.mark.parametrize("twin_id", sorted(ISSUE_DAY))
def test_warnings_levels_for_every_region_with_probabilities(
    demo_store: DatacubeStore, twin_id: str, demo_engine: Engine
) -> None:
    result = warnings(demo_engine, twin_id, issued=ISSUE_DAY[twin_id], lead_days=7)
    twin = demo_store.read_twin(twin_id)
    assert {w.region_id for w in result} == {r.id for r in twin.regions}
    for w in result:
        assert w.flood_level in {"none", "medium", "high", "severe"}
        assert w.drought_level in {"none", "moderate", "severe", "extreme"}
        assert all(0.0 <= p <= 1.0 for p in w.flood_probability.values())
        assert set(w.flood_probability) == {2, 5, 20}
        assert w.valid_from > w.issued


@pytest.mark.parametrize("twin_id", sorted(ISSUE_DAY))
def test_scaled_precipitation_raises_a_flood_level(
    demo_store: DatacubeStore, twin_id: str, demo_engine: Engine
) -> None:
    order = ["none", "medium", "high", "severe"]
    kwargs = dict(issued=ISSUE_DAY[twin_id], lead_days=10)
    base = {w.region_id: w for w in warnings(demo_engine, twin_id, **kwargs)}
    wet = {
        w.region_id: w for w in warnings(demo_engine, twin_id, precipitation_factor=4.0, **kwargs)
    }
    raised = [r for r in base if order.index(wet[r].flood_level) > order.index(base[r].flood_level)]
    assert raised, {r: (base[r].flood_level, wet[r].flood_level) for r in base}
    for r in base:
        assert wet[r].flood_probability[2] >= base[r].flood_probability[2]


def test_delaware_regions_are_real_gauged_basins_with_their_own_models(
    demo_store: DatacubeStore, demo_engine: Engine
) -> None:
    from twinmesh.core.demo.delaware import REGION_GAUGES

    twin = demo_store.read_twin("delaware")
    model = twin.model("gr4j")
    assert len(twin.gauges) == 168
    gauges = {g.id: g for g in twin.gauges}
    for gauge_id, (region_id, _) in REGION_GAUGES.items():
        region = twin.region(region_id)
        # The basin found through the NHM network matches USGS's drainage area.
        assert region.area_km2 == pytest.approx(gauges[gauge_id].area_km2, rel=0.1)
        assert set(model.parameters_for(region_id)) == {
            "x1_mm",
            "x2_mm",
            "x3_mm",
            "x4_days",
            "ctg",
            "kf_mm_per_degc_day",
            "g_threshold_mm",
        }
        assert region.outlet_gauge == gauge_id
    assert len({tuple(p.values()) for p in model.region_parameters.values()}) == len(REGION_GAUGES)
    assert model.skill["validation"]["kge"] > 0.5
    runoff = simulate(demo_engine, "delaware", "1980-01-01", "1980-12-31")
    assert runoff["discharge_m3s"].shape == (366, len(REGION_GAUGES))


def test_simulate_scenario_scales_discharge(demo_store: DatacubeStore, demo_engine: Engine) -> None:
    base = simulate(demo_engine, "fulda", "1986-01-01", "1986-12-31")
    wet = simulate(demo_engine, "fulda", "1986-01-01", "1986-12-31", precipitation_factor=1.5)
    assert base.sizes["t"] == 365
    assert float(wet["discharge_m3s"].sum()) > 1.2 * float(base["discharge_m3s"].sum())


def test_forecast_ensemble_shape_and_determinism(
    demo_store: DatacubeStore, demo_engine: Engine
) -> None:
    a = forecast(demo_engine, "fulda", issued="1985-03-01", members=7, lead_days=5)
    b = forecast(demo_engine, "fulda", issued="1985-03-01", members=7, lead_days=5)
    assert a["discharge_m3s"].dims == ("member", "t", "region")
    assert a["discharge_m3s"].shape == (7, 5, 6)
    np.testing.assert_array_equal(a["discharge_m3s"].values, b["discharge_m3s"].values)
    assert str(a["t"].values[0])[:10] == "1985-03-02"
    assert (a["discharge_m3s"].values >= 0).all()


def test_subset_by_bbox_and_time(demo_store: DatacubeStore) -> None:
    ds = subset(
        demo_store,
        "fulda",
        "forcing",
        bbox=[9.5, 50.6, 9.8, 50.9],
        start="1985-01-01",
        end="1985-01-31",
    )
    assert ds.sizes["t"] == 31
    assert float(ds["x"].min()) >= 9.5 and float(ds["x"].max()) <= 9.8
    assert float(ds["y"].min()) >= 50.6 and float(ds["y"].max()) <= 50.9


BAD_CALLS = [
    (errors.UnknownTwin, lambda e: warnings(e, "rhine")),
    (errors.UnknownDataset, lambda e: subset(e.store, "fulda", "snow-depth")),
    (errors.OutOfExtent, lambda e: subset(e.store, "fulda", "forcing", bbox=[0, 0, 1, 1])),
    (errors.InvalidParameter, lambda e: subset(e.store, "fulda", "forcing", bbox=[10, 50, 9, 51])),
    (errors.InvalidTimeRange, lambda e: simulate(e, "fulda", "1986-12-31", "1986-01-01")),
    (errors.OutOfExtent, lambda e: simulate(e, "fulda", "1970-01-01", "1986-01-01")),
    (errors.InvalidParameter, lambda e: forecast(e, "fulda", members=-5)),
    (errors.InvalidParameter, lambda e: forecast(e, "fulda", lead_days=0)),
    (errors.InvalidParameter, lambda e: warnings(e, "fulda", precipitation_factor=-1)),
    (errors.OutOfExtent, lambda e: forecast(e, "fulda", issued="1989-01-05", lead_days=10)),
    (
        errors.OutOfExtent,
        lambda e: forecast(e, "fulda", issued="1988-12-30", lead_days=10, forcing="observed"),
    ),
    (errors.InvalidParameter, lambda e: forecast(e, "fulda", issued="1987-03-01", members=10)),
    (errors.InvalidParameter, lambda e: forecast(e, "fulda", forcing="observed", members=3)),
    (errors.InvalidParameter, lambda e: forecast(e, "fulda", forcing="noise")),
    (errors.InvalidParameter, lambda e: forecast(e, "fulda", seed=3)),
    (
        errors.UnknownRegion,
        lambda e: simulate(e, "fulda", "1986-01-01", "1986-02-01", regions=["atlantis"]),
    ),
    (errors.InvalidParameter, lambda e: subset(e.store, "../etc", "forcing")),
]


@pytest.mark.parametrize(("error", "call"), BAD_CALLS)
def test_bad_input_raises_typed_error_and_leaves_store_alone(
    demo_store: DatacubeStore, error: type[errors.TwinmeshError], call, demo_engine: Engine
) -> None:
    before = _tree_digest(demo_store.root)
    with pytest.raises(error) as info:
        call(demo_engine)
    assert info.value.message  # says what was wrong
    assert 400 <= info.value.status < 500
    assert _tree_digest(demo_store.root) == before
