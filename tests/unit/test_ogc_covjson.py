"""CoverageJSON from numpy (twinmesh.ogc.covjson): values where the domain says they
are, for ascending and descending latitude, NaN as null, valid against the CoverageJSON
models (covjson-pydantic)."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pandas as pd
import pytest
import xarray as xr
from covjson_pydantic.coverage import Coverage, CoverageCollection
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from twinmesh.ogc import covjson


def _cube(ny: int, nx: int, nt: int, *, ascending: bool, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    y = 50.0 + 0.05 * np.arange(ny)
    if not ascending:
        y = y[::-1]
    x = 9.0 + 0.05 * np.arange(nx)
    t = pd.date_range("1980-01-01", periods=nt, freq="D")
    values = rng.normal(5, 3, (nt, ny, nx)).astype("float32")
    values[0, 0, -1] = np.nan
    return xr.Dataset(
        {
            "precipitation": (
                ("t", "y", "x"),
                values,
                {"units": "mm", "long_name": "daily precipitation"},
            ),
            "temperature": (("t", "y", "x"), values * 2, {"units": "degC"}),
        },
        coords={"t": t, "y": y, "x": x},
    )


def _value_at(doc: dict, name: str, x: float, y: float, t: str | None) -> float | None:
    """The value of range ``name`` at (x, y, t), located only through the document's
    own axes, axisNames and shape, as a client reads it."""
    axes = doc["domain"]["axes"]
    index = {
        "x": axes["x"]["values"].index(x),
        "y": axes["y"]["values"].index(y),
    }
    if t is not None:
        index["t"] = axes["t"]["values"].index(t)
    rng = doc["ranges"][name]
    flat = int(np.ravel_multi_index([index[a] for a in rng["axisNames"]], rng["shape"]))
    return rng["values"][flat]


def _same(value: float | None, expected: np.floating) -> bool:
    if np.isnan(expected):
        return value is None
    return value is not None and np.float32(value) == np.float32(expected)


@pytest.mark.parametrize("ascending", [True, False], ids=["lat-ascending", "lat-descending"])
def test_grid_values_are_where_the_domain_says(ascending: bool) -> None:
    ds = _cube(4, 3, 5, ascending=ascending)
    doc = orjson.loads(covjson.encode(covjson.from_dataset(ds)))
    assert doc["domain"]["domainType"] == "Grid"
    assert doc["domain"]["axes"]["y"]["values"] == ds["y"].values.tolist()
    times = covjson.time_strings(ds["t"].values)
    for it, t in enumerate(times):
        for iy, y in enumerate(ds["y"].values.tolist()):
            for ix, x in enumerate(ds["x"].values.tolist()):
                for name in ("precipitation", "temperature"):
                    expected = ds[name].values[it, iy, ix]
                    assert _same(_value_at(doc, name, x, y, t), expected), (name, it, iy, ix)
    Coverage.model_validate_json(orjson.dumps(doc))


def test_descending_and_ascending_copies_agree_at_every_position() -> None:
    """The same field stored north-up and south-up answers alike at each (x, y, t)."""
    down = _cube(5, 4, 3, ascending=False)
    up = down.isel(y=slice(None, None, -1))
    a = orjson.loads(covjson.encode(covjson.from_dataset(down)))
    b = orjson.loads(covjson.encode(covjson.from_dataset(up)))
    assert a["domain"]["axes"]["y"]["values"] == b["domain"]["axes"]["y"]["values"][::-1]
    for t in a["domain"]["axes"]["t"]["values"]:
        for y in a["domain"]["axes"]["y"]["values"]:
            for x in a["domain"]["axes"]["x"]["values"]:
                assert _value_at(a, "precipitation", x, y, t) == _value_at(
                    b, "precipitation", x, y, t
                )


def test_nan_is_null_and_standard_json_reads_it() -> None:
    ds = _cube(2, 2, 1, ascending=True)
    body = covjson.encode(covjson.from_dataset(ds))
    assert b"NaN" not in body
    doc = json.loads(body)
    assert None in doc["ranges"]["precipitation"]["values"]


def test_float32_text_round_trips_exactly() -> None:
    values = np.array([[[0.1, 1e-7, 3.4028235e38, -2.5, 123456.78]]], dtype="float32")
    ds = xr.Dataset(
        {"v": (("t", "y", "x"), values, {"units": "1"})},
        coords={"t": pd.date_range("2000-01-01", periods=1), "y": [1.0], "x": np.arange(5.0)},
    )
    doc = orjson.loads(covjson.encode(covjson.from_dataset(ds)))
    got = np.array(doc["ranges"]["v"]["values"], dtype="float64").astype("float32")
    np.testing.assert_array_equal(got, values.ravel())


def test_point_series_of_a_position() -> None:
    ds = _cube(3, 3, 6, ascending=False).isel(y=1, x=2)
    doc = orjson.loads(covjson.encode(covjson.from_dataset(ds)))
    assert doc["domain"]["domainType"] == "PointSeries"
    assert doc["domain"]["axes"]["x"]["values"] == [float(ds["x"])]
    assert doc["domain"]["axes"]["y"]["values"] == [float(ds["y"])]
    rng = doc["ranges"]["temperature"]
    assert rng["axisNames"] == ["t"] and rng["shape"] == [6]
    for i, value in enumerate(rng["values"]):
        assert _same(value, ds["temperature"].values[i])
    Coverage.model_validate_json(orjson.dumps(doc))


def test_point_and_time_aggregate_bounds() -> None:
    ds = _cube(3, 3, 6, ascending=True)
    mean = ds.mean("t", keep_attrs=True)
    first, last = ds["t"].values[0], ds["t"].values[-1]
    grid = covjson.from_dataset(mean.expand_dims(t=[first]), t_bounds=(first, last))
    doc = orjson.loads(covjson.encode(grid))
    assert doc["domain"]["axes"]["t"] == {
        "values": ["1980-01-01T00:00:00Z"],
        "bounds": ["1980-01-01T00:00:00Z", "1980-01-06T00:00:00Z"],
    }
    Coverage.model_validate_json(orjson.dumps(doc))
    single = covjson.from_dataset(ds.isel(t=2, y=0, x=1))
    doc = orjson.loads(covjson.encode(single))
    assert doc["domain"]["domainType"] == "Point"
    assert _same(doc["ranges"]["precipitation"]["values"][0], ds["precipitation"].values[2, 0, 1])
    Coverage.model_validate_json(orjson.dumps(doc))


def test_coverage_collection_of_point_series() -> None:
    ds = _cube(3, 3, 4, ascending=False)
    members = [covjson.from_dataset(ds.isel(y=i, x=i)) for i in range(3)]
    doc = orjson.loads(
        covjson.encode(covjson.coverage_collection(members, covjson.parameters_of(ds)))
    )
    assert doc["type"] == "CoverageCollection" and len(doc["coverages"]) == 3
    CoverageCollection.model_validate_json(orjson.dumps(doc))


def test_parameters_state_units_and_observed_property() -> None:
    doc = covjson.from_dataset(_cube(1, 1, 1, ascending=True))
    precip = doc["parameters"]["precipitation"]
    assert precip["observedProperty"]["label"] == {"en": "daily precipitation"}
    assert precip["unit"]["symbol"] == {
        "value": "mm",
        "type": "http://www.opengis.net/def/uom/UCUM/",
    }
    assert doc["parameters"]["temperature"]["unit"]["symbol"]["value"] == "Cel"


def test_jsonable_is_the_same_document_for_the_json_module() -> None:
    doc = covjson.from_dataset(_cube(3, 2, 2, ascending=False))
    assert json.loads(json.dumps(covjson.jsonable(doc))) == orjson.loads(covjson.encode(doc))


def test_shapes_are_checked() -> None:
    params = {"v": covjson.Parameter("v", "v")}
    with pytest.raises(ValueError, match="shape"):
        covjson.grid(np.arange(3.0), np.arange(2.0), {"v": np.zeros((3, 2))}, params)
    with pytest.raises(ValueError, match="no parameter"):
        covjson.grid(np.arange(3.0), np.arange(2.0), {"w": np.zeros((2, 3))}, params)


@st.composite
def _grids(draw: st.DrawFn) -> xr.Dataset:
    nt = draw(st.integers(1, 4))
    ny = draw(st.integers(1, 5))
    nx = draw(st.integers(1, 5))
    values = draw(
        arrays(
            np.float32,
            (nt, ny, nx),
            elements=st.floats(width=32, allow_nan=True, allow_infinity=False),
        )
    )
    y0 = draw(st.floats(-80, 80))
    dy = draw(st.sampled_from([0.05, 0.25, -0.05, -0.25]))
    x0 = draw(st.floats(-170, 170))
    return xr.Dataset(
        {"v": (("t", "y", "x"), values, {"units": "mm"})},
        coords={
            "t": pd.date_range("1979-01-01", periods=nt, freq="D"),
            "y": np.round(y0 + dy * np.arange(ny), 6),
            "x": np.round(x0 + 0.1 * np.arange(nx), 6),
        },
    )


@given(_grids())
def test_every_value_is_where_the_domain_says(ds: xr.Dataset) -> None:
    doc = orjson.loads(covjson.encode(covjson.from_dataset(ds)))
    times = covjson.time_strings(ds["t"].values)
    values = ds["v"].values
    for it, t in enumerate(times):
        for iy, y in enumerate(ds["y"].values.tolist()):
            for ix, x in enumerate(ds["x"].values.tolist()):
                assert _same(_value_at(doc, "v", x, y, t), values[it, iy, ix])
    Coverage.model_validate_json(orjson.dumps(doc))
