"""EDR and Coverages over the demo twins' datacubes, through the real OGC API on
127.0.0.1 with owslib's clients (and httpx where owslib has no option), values checked
against xarray on the same selection; plus the same request functions in-process
(pygeoapi's API object) for what needs other settings: a small result limit, a cube
whose latitude ascends.

The demo's ``fulda-forcing`` cube is (t, y, x) with y descending, 0.05-degree cells
centred on 9.225..10.075 E, 51.275..50.375 N, daily 1979-1988.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import xarray as xr
from covjson_pydantic.coverage import Coverage, CoverageCollection
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from owslib.ogcapi.coverages import Coverages
from owslib.ogcapi.edr import EnvironmentalDataRetrieval
from zarr.storage import ZipStore

from tests.helpers.ogc_server import OgcServer, running_ogc_server
from twinmesh.core.settings import Settings
from twinmesh.core.store import DatacubeStore
from twinmesh.ogc import coverages
from twinmesh.ogc.config import ogc_config

COLLECTION = "fulda-forcing"
BBOX = (9.5, 50.5, 9.9, 50.9)
YEAR = ("1980-01-01", "1980-12-31")


@pytest.fixture(scope="module")
def server(demo_settings: Settings) -> Iterator[OgcServer]:
    with running_ogc_server(demo_settings) as srv:
        yield srv


@pytest.fixture(scope="module")
def forcing(demo_store: DatacubeStore) -> xr.Dataset:
    return demo_store.open("fulda", "forcing")


def _year_box(ds: xr.Dataset) -> xr.Dataset:
    w, s, e, n = BBOX
    return ds.sel(x=slice(w, e), y=slice(n, s), t=slice(*YEAR))


def _grid(doc: dict[str, Any], name: str) -> np.ndarray:
    rng = doc["ranges"][name]
    values = np.array([np.nan if v is None else v for v in rng["values"]], dtype="float64")
    return values.astype("float32").reshape(rng["shape"])


def _times(ds: xr.Dataset) -> list[str]:
    return [f"{t}Z" for t in np.datetime_as_string(ds["t"].values, unit="s")]


def _assert_grid_equals(doc: dict[str, Any], expected: xr.Dataset) -> None:
    axes = doc["domain"]["axes"]
    assert axes["x"]["values"] == expected["x"].values.tolist()
    assert axes["y"]["values"] == expected["y"].values.tolist()
    if "t" in expected.dims:
        assert axes["t"]["values"] == _times(expected)
    for name in expected.data_vars:
        order = [a for a in doc["ranges"][name]["axisNames"]]
        np.testing.assert_array_equal(
            _grid(doc, str(name)), expected[name].transpose(*order).values
        )


# -- EDR through owslib --------------------------------------------------------------
def test_edr_cube_equals_xarray(server: OgcServer, forcing: xr.Dataset) -> None:
    edr = EnvironmentalDataRetrieval(server.url)
    doc = edr.query_data(COLLECTION, "cube", bbox=list(BBOX), datetime_="/".join(YEAR))
    Coverage.model_validate_json(orjson.dumps(doc))
    assert doc["domain"]["domainType"] == "Grid"
    expected = _year_box(forcing).load()
    assert expected.sizes == {"t": 366, "y": 8, "x": 8}
    _assert_grid_equals(doc, expected)


def test_edr_position_is_the_cell_series(server: OgcServer, forcing: xr.Dataset) -> None:
    edr = EnvironmentalDataRetrieval(server.url)
    doc = edr.query_data(
        COLLECTION, "position", coords="POINT(9.71 50.79)", datetime_="1980-06-01/1980-06-30"
    )
    Coverage.model_validate_json(orjson.dumps(doc))
    assert doc["domain"]["domainType"] == "PointSeries"
    cell = forcing.sel(x=9.71, y=50.79, method="nearest").sel(t=slice("1980-06-01", "1980-06-30"))
    assert doc["domain"]["axes"]["x"]["values"] == [float(cell["x"])]
    assert doc["domain"]["axes"]["y"]["values"] == [float(cell["y"])]
    assert doc["domain"]["axes"]["t"]["values"] == _times(cell)
    for name in ("precipitation", "temperature"):
        np.testing.assert_array_equal(_grid(doc, name), cell[name].values)


def test_edr_multipoint_is_a_collection_of_series(server: OgcServer, forcing: xr.Dataset) -> None:
    edr = EnvironmentalDataRetrieval(server.url)
    doc = edr.query_data(
        COLLECTION,
        "position",
        coords="MULTIPOINT((9.71 50.79),(9.31 51.01))",
        datetime_="1980-06-01/1980-06-03",
    )
    CoverageCollection.model_validate_json(orjson.dumps(doc))
    assert [c["domain"]["axes"]["x"]["values"] for c in doc["coverages"]] == [[9.725], [9.325]]
    second = forcing.sel(x=9.31, y=51.01, method="nearest").sel(t=slice("1980-06-01", "1980-06-03"))
    np.testing.assert_array_equal(
        _grid(doc["coverages"][1], "precipitation"), second["precipitation"].values
    )


def test_edr_area_masks_cells_outside_the_polygon(server: OgcServer, forcing: xr.Dataset) -> None:
    edr = EnvironmentalDataRetrieval(server.url)
    # no cell centre lies on the diagonal edge (centres are 0.05 apart, offset 0.025)
    triangle = "POLYGON((9.51 50.5,9.9 50.5,9.9 50.89,9.51 50.5))"
    doc = edr.query_data(COLLECTION, "area", coords=triangle, datetime_="1980-06-01")
    Coverage.model_validate_json(orjson.dumps(doc))
    box = _year_box(forcing).sel(t=["1980-06-01"]).load()
    xx, yy = np.meshgrid(box["x"].values, box["y"].values)
    inside = (yy - 50.5) <= (xx - 9.51)  # the triangle below the diagonal
    expected = box.where(xr.DataArray(inside, dims=("y", "x")))
    _assert_grid_equals(doc, expected)
    assert np.isnan(_grid(doc, "precipitation")).any()


def test_edr_time_mean_grid(server: OgcServer, forcing: xr.Dataset) -> None:
    w, s, e, n = BBOX
    r = httpx.get(
        f"{server.url}/collections/{COLLECTION}/cube",
        params={
            "bbox": f"{w},{s},{e},{n}",
            "datetime": "/".join(YEAR),
            "parameter-name": "precipitation",
            coverages.AGGREGATE_PARAMETER: "mean",
        },
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    Coverage.model_validate_json(orjson.dumps(doc))
    assert list(doc["ranges"]) == ["precipitation"]
    assert doc["domain"]["axes"]["t"] == {
        "values": ["1980-01-01T00:00:00Z"],
        "bounds": ["1980-01-01T00:00:00Z", "1980-12-31T00:00:00Z"],
    }
    expected = _year_box(forcing)["precipitation"].mean("t").values
    np.testing.assert_allclose(_grid(doc, "precipitation")[0], expected, rtol=1e-6)


def test_edr_netcdf_and_zarr_open_with_xarray(server: OgcServer, forcing: xr.Dataset) -> None:
    w, s, e, n = BBOX
    params = {"bbox": f"{w},{s},{e},{n}", "datetime": "/".join(YEAR)}
    expected = _year_box(forcing).load()
    r = httpx.get(f"{server.url}/collections/{COLLECTION}/cube", params={**params, "f": "netcdf"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-netcdf"
    got = xr.open_dataset(io.BytesIO(r.content), engine="h5netcdf").load()
    xr.testing.assert_equal(got[["precipitation", "temperature"]], expected)
    assert got["precipitation"].attrs["units"] == "mm"

    r = httpx.get(f"{server.url}/collections/{COLLECTION}/cube", params={**params, "f": "zarr"})
    assert r.status_code == 200, r.text
    assert zipfile.is_zipfile(io.BytesIO(r.content))
    with ZipStore(io.BytesIO(r.content), mode="r") as store:
        got = xr.open_zarr(store, consolidated=False, zarr_format=3).load()
    xr.testing.assert_equal(got[["precipitation", "temperature"]], expected)


# -- Coverages through owslib --------------------------------------------------------
def test_coverage_subset_equals_xarray(server: OgcServer, forcing: xr.Dataset) -> None:
    cov = Coverages(server.url)
    w, s, e, n = BBOX
    body = cov.coverage(
        COLLECTION,
        subset={"x": (w, e), "y": (s, n), "t": YEAR},
        properties=["temperature"],
    )
    doc = orjson.loads(body.read())
    Coverage.model_validate_json(orjson.dumps(doc))
    expected = _year_box(forcing)[["temperature"]].load()
    _assert_grid_equals(doc, expected)


def test_coverage_netcdf_by_accept_header(server: OgcServer, forcing: xr.Dataset) -> None:
    cov = Coverages(server.url, headers={"Accept": "application/x-netcdf"})
    w, s, e, n = BBOX
    body = cov.coverage(COLLECTION, subset={"x": (w, e), "y": (s, n)}, datetime="/".join(YEAR))
    got = xr.open_dataset(body, engine="h5netcdf").load()
    xr.testing.assert_equal(got[["precipitation", "temperature"]], _year_box(forcing).load())


def test_coverage_slicing_drops_the_axis(server: OgcServer, forcing: xr.Dataset) -> None:
    r = httpx.get(
        f"{server.url}/collections/{COLLECTION}/coverage",
        params={"subset": 'x(9.71),y(50.79),t("1980-06-01":"1980-06-10")'},
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["domain"]["domainType"] == "PointSeries"
    cell = forcing.sel(x=9.71, y=50.79, method="nearest").sel(t=slice("1980-06-01", "1980-06-10"))
    np.testing.assert_array_equal(_grid(doc, "temperature"), cell["temperature"].values)


def test_coverage_monthly_means_by_temporal_scaling(server: OgcServer, forcing: xr.Dataset) -> None:
    r = httpx.get(
        f"{server.url}/collections/{COLLECTION}/coverage",
        params={"subset": 't("1980-01-01":"1980-12-31")', "resolution": "time(P1M)"},
        headers={"Prefer": "interpolation=time([ogc-interpolation:maximum])"},
    )
    assert r.status_code == 200, r.text
    assert "maximum" in r.headers["preference-applied"]
    doc = r.json()
    Coverage.model_validate_json(orjson.dumps(doc))
    expected = forcing.sel(t=slice(*YEAR)).resample(t="1MS").max().load()
    assert doc["domain"]["axes"]["t"]["values"] == _times(expected)
    np.testing.assert_array_equal(_grid(doc, "precipitation"), expected["precipitation"].values)


def test_coverage_outside_the_data_is_204(server: OgcServer) -> None:
    for params in ({"bbox": "0,0,1,1"}, {"subset": 't("2001-01-01":"2002-01-01")'}):
        r = httpx.get(f"{server.url}/collections/{COLLECTION}/coverage", params=params)
        assert r.status_code == 204, (params, r.text)
        assert r.content == b""


# -- bad input: 4xx OGC exceptions, never a 500 -----------------------------------------
EDR_BAD = [
    ("cube", {"bbox": "0,0,0,0"}, 400, "outside"),
    ("cube", {"bbox": "9.9,50.5,9.5,50.9"}, 400, "inverted"),
    ("cube", {"bbox": "9.5,50.5,9.9"}, 400, "4 comma-separated"),
    ("cube", {"bbox": "9.5,50.5,0,9.9,50.9,10"}, 400, "vertical"),
    ("cube", {"bbox": "9.5,nan,9.9,50.9"}, 400, "finite"),
    ("cube", {"bbox": "9.5,50.5,9.9,50.9", "datetime": "1980-13-45"}, 400, "RFC 3339"),
    ("cube", {"bbox": "9.5,50.5,9.9,50.9", "datetime": "1981-01-01/1980-01-01"}, 400, "inverted"),
    ("cube", {"bbox": "9.5,50.5,9.9,50.9", "datetime": "9999-12-31T23:59:59-23:59"}, 400, ""),
    ("cube", {"bbox": "9.5,50.5,9.9,50.9", "datetime": "2050-01-01"}, 400, "outside"),
    ("cube", {"bbox": "9.5,50.5,9.9,50.9", "parameter-name": "rain"}, 400, "rain"),
    ("cube", {"bbox": "9.5,50.5,9.9,50.9", "z": "100"}, 400, "vertical"),
    ("cube", {"bbox": "9.5,50.5,9.9,50.9", "crs": "EPSG:3857"}, 400, "crs"),
    ("cube", {"bbox": "9.5,50.5,9.9,50.9", "resolution-x": "2"}, 400, "resolution-x"),
    ("cube", {"bbox": "9.5,50.5,9.9,50.9", "f": "geotiff"}, 400, "geotiff"),
    ("cube", {"bbox": "9.5,50.5,9.9,50.9", coverages.AGGREGATE_PARAMETER: "mode"}, 400, "mode"),
    ("cube", {}, 400, "bbox"),
    ("position", {"coords": "POINT(9.7"}, 400, "well-known text"),
    ("position", {"coords": "POINT(1 1)"}, 400, "outside"),
    ("position", {"coords": "MULTIPOINT((9.7 50.8), EMPTY)"}, 400, "empty"),
    ("position", {"coords": "POINT(nan nan)"}, 400, "finite"),
    ("position", {"coords": "POINT Z(9.7 50.8 3)"}, 400, "z values"),
    ("position", {"coords": "LINESTRING(9.7 50.8,9.8 50.9)"}, 400, "POINT"),
    ("position", {"coords": "POINT(9.7 50.8)", "bbox": "9,50,10,51"}, 400, "bbox"),
    (
        "area",
        {"coords": "POLYGON((9.501 50.501,9.502 50.501,9.502 50.502,9.501 50.501))"},
        400,
        "no grid cell",
    ),
    ("area", {"coords": "POLYGON((0 0,1 0,1 1,0 0))"}, 400, "outside"),
    ("radius", {"coords": "POINT(9.7 50.8)", "within": "10"}, None, ""),
]


@pytest.mark.parametrize(("query", "params", "status", "says"), EDR_BAD)
def test_edr_bad_input_is_a_4xx_exception(
    server: OgcServer, query: str, params: dict[str, str], status: int | None, says: str
) -> None:
    r = httpx.get(f"{server.url}/collections/{COLLECTION}/{query}", params=params)
    if status is None:
        assert 400 <= r.status_code < 500, r.text
        return
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == body["type"] == "InvalidParameterValue"
    assert says.lower() in body["description"].lower()
    assert "Traceback" not in body["description"]


def test_owslib_parameter_names_is_refused_by_name(server: OgcServer) -> None:
    """owslib 0.36 sends ``parameter_names`` where EDR says ``parameter-name``: a
    parameter the service does not know is a 400 naming it, never ignored."""
    edr = EnvironmentalDataRetrieval(server.url)
    with pytest.raises(RuntimeError, match="parameter_names"):
        edr.query_data(COLLECTION, "cube", bbox=list(BBOX), parameter_names=["precipitation"])


COVERAGE_BAD = [
    ({"bbox": "9.9,50.5,9.5,50.9"}, "inverted"),
    ({"bbox": "a,b,c,d"}, "number"),
    ({"subset": "z(1:2)"}, "axis"),
    ({"subset": "x(9.9:9.5)"}, "greater"),
    ({"subset": "x(9.5:9.9"}, "subset"),
    ({"subset": "x(9.5:9.9)", "bbox": "9,50,10,51"}, "exclude"),
    ({"subset": 't("1980-01-01T00:00:00Z")', "datetime": "1980-01-01"}, "exclude"),
    ({"subset": "t(1980-01-01T00:00:00Z:1980-02-01T00:00:00Z)"}, "quote"),
    ({"datetime": "yesterday"}, "RFC 3339"),
    ({"properties": "rain"}, "rain"),
    ({"scale-factor": "2"}, "scale-factor"),
    ({"resolution": "x(0.1)"}, "temporal"),
    ({"resolution": "time(PT1H)"}, "period"),
    ({"resolution": "time(P99999999999999999999D)"}, "longer"),
    ({"bbox-crs": "EPSG:3857", "bbox": "9,50,10,51"}, "bbox-crs"),
    ({"f": "png"}, "png"),
]


@pytest.mark.parametrize(("params", "says"), COVERAGE_BAD)
def test_coverage_bad_input_is_a_400_exception(
    server: OgcServer, params: dict[str, str], says: str
) -> None:
    r = httpx.get(f"{server.url}/collections/{COLLECTION}/coverage", params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "InvalidParameterValue"
    assert says.lower() in body["description"].lower()


# -- in-process: the same request functions on pygeoapi's API object ---------------------
def _api(settings: Settings) -> Any:
    from pygeoapi.api import API

    return API(ogc_config(settings), {})


def _request(api: Any, path: str, params: dict[str, str], headers: dict[str, str] | None = None):
    from urllib.parse import urlencode

    from pygeoapi.api import APIRequest
    from starlette.requests import Request

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": urlencode(params).encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    return APIRequest(Request(scope), api.locales)


def _edr(api: Any, collection: str, query: str, params: dict[str, str]):
    request = _request(api, f"/collections/{collection}/{query}", params)
    return coverages.get_collection_edr_query(api, request, collection, None, query)


def test_a_result_over_the_limit_is_413_before_reading(demo_settings: Settings) -> None:
    small = demo_settings.model_copy(update={"max_result_bytes": 200_000})
    api = _api(small)
    # 366 days x 8 x 8 cells x 2 variables x 12 bytes of CoverageJSON > 200 kB
    headers, status, body = _edr(
        api, COLLECTION, "cube", {"bbox": ",".join(map(str, BBOX)), "datetime": "/".join(YEAR)}
    )
    assert status == 413
    assert "max_result_bytes" in orjson.loads(body)["description"]
    # the same selection aggregated over time is small
    headers, status, body = _edr(
        api,
        COLLECTION,
        "cube",
        {
            "bbox": ",".join(map(str, BBOX)),
            "datetime": "/".join(YEAR),
            coverages.AGGREGATE_PARAMETER: "mean",
        },
    )
    assert status == 200


@pytest.fixture(scope="module")
def ascending_settings(
    demo_settings: Settings, demo_store: DatacubeStore, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """A store holding the Fulda forcing's first two years with latitude ascending."""
    root: Path = tmp_path_factory.mktemp("ogc-ascending")
    store = DatacubeStore(str(root / "store"))
    twin = demo_store.read_twin("fulda")
    store.write_twin(twin)
    cube = demo_store.open("fulda", "forcing").isel(t=slice(0, 731), y=slice(None, None, -1))
    store.write("fulda", "forcing", cube.chunk({"t": 366, "y": -1, "x": -1}).load())
    return Settings(data_dir=root, store_url=str(root / "store"))


@pytest.mark.parametrize("query", ["cube", "position", "area"])
def test_ascending_latitude_answers_like_xarray(ascending_settings: Settings, query: str) -> None:
    api = _api(ascending_settings)
    cube = DatacubeStore(ascending_settings.resolved_store_url).open("fulda", "forcing")
    assert cube["y"].values[0] < cube["y"].values[-1]
    w, s, e, n = BBOX
    params = {
        "cube": {"bbox": f"{w},{s},{e},{n}"},
        "position": {"coords": "POINT(9.71 50.79)"},
        "area": {"coords": f"POLYGON(({w} {s},{e} {s},{e} {n},{w} {n},{w} {s}))"},
    }[query]
    _, status, body = _edr(api, COLLECTION, query, {**params, "datetime": "1979-03-01/1979-03-31"})
    assert status == 200, body
    doc = orjson.loads(body)
    selection = cube.sel(t=slice("1979-03-01", "1979-03-31"))
    if query == "position":
        expected = selection.sel(x=9.71, y=50.79, method="nearest").load()
        np.testing.assert_array_equal(_grid(doc, "temperature"), expected["temperature"].values)
        return
    expected = selection.sel(x=slice(w, e), y=slice(s, n)).load()
    assert doc["domain"]["axes"]["y"]["values"] == sorted(doc["domain"]["axes"]["y"]["values"])
    _assert_grid_equals(doc, expected)


@hypothesis_settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    w=st.floats(8.5, 10.5),
    s=st.floats(50.0, 51.6),
    dw=st.floats(0, 1.2),
    dh=st.floats(0, 1.2),
)
def test_any_bbox_is_the_xarray_selection_or_a_400(
    demo_settings: Settings, forcing: xr.Dataset, w: float, s: float, dw: float, dh: float
) -> None:
    api = _api_cached(demo_settings)
    e, n = w + dw, s + dh
    _, status, body = _edr(
        api, COLLECTION, "cube", {"bbox": f"{w},{s},{e},{n}", "datetime": "1980-06-01"}
    )
    expected = forcing.sel(x=slice(w, e), y=slice(n, s), t=["1980-06-01"])
    if expected.sizes["x"] == 0 or expected.sizes["y"] == 0:
        assert status == 400, body
        return
    assert status == 200, body
    _assert_grid_equals(orjson.loads(body), expected.load())


_APIS: dict[str, Any] = {}


def _api_cached(settings: Settings) -> Any:
    key = str(settings.data_dir)
    if key not in _APIS:
        _APIS[key] = _api(settings)
    return _APIS[key]


def test_pygeoapis_own_functions_work_with_the_providers(demo_settings: Settings) -> None:
    """Routed through pygeoapi's own request functions (its slower CoverageJSON path),
    the providers still answer right, and a bad bbox is a 400, not pygeoapi's 500."""
    from pygeoapi.api import coverages as coverages_api
    from pygeoapi.api import environmental_data_retrieval as edr_api

    api = _api_cached(demo_settings)
    bbox = ",".join(map(str, BBOX))
    request = _request(api, f"/collections/{COLLECTION}/cube", {"bbox": bbox})
    _, status, body = edr_api.get_collection_edr_query(api, request, COLLECTION, None, "cube")
    assert status == 200, body
    assert orjson.loads(body)["domain"]["axes"]["x"]["values"][0] == 9.525
    request = _request(api, f"/collections/{COLLECTION}/cube", {"bbox": "0,0,0,0"})
    _, status, body = edr_api.get_collection_edr_query(api, request, COLLECTION, None, "cube")
    assert status == 400, body
    request = _request(api, f"/collections/{COLLECTION}/coverage", {"subset": "x(9.5:9.9)"})
    _, status, body = coverages_api.get_collection_coverage(api, request, COLLECTION)
    assert status == 200
    assert orjson.loads(body)["domain"]["domainType"] == "Grid"
    request = _request(api, f"/collections/{COLLECTION}/coverage", {"f": "netcdf"})
    _, status, body = coverages_api.get_collection_coverage(api, request, COLLECTION)
    assert status == 200 and body[:4] == b"\x89HDF"
