"""The openEO API with the official ``openeo`` client, unmodified, against the service
running as its own process: discovery, synchronous downloads in three formats, batch
jobs run by a real ``twinmesh worker`` (surviving restarts), ``load_stac`` of a result,
errors as openEO error objects. Values are compared with plain xarray on the same cube.
"""

from __future__ import annotations

import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import openeo
import pytest
import rioxarray  # noqa: F401 - .rio accessor
import xarray as xr
import zarr
from openeo.rest import OpenEoApiError

from tests.helpers.openeo_server import (
    DEV_USER,
    SMALL,
    OpenEOServer,
    build_small_twin,
    openeo_env,
    running_openeo_server,
)
from tests.helpers.processes import stop_process
from tests.helpers.stac_server import free_port, running_stac_server
from twinmesh.core.settings import Settings, StacSettings

COLLECTION = f"{SMALL}-grid"
BBOX = {"west": 9.1, "south": 50.1, "east": 9.5, "north": 50.45}
TIME = ["2020-01-10", "2020-02-15"]
#: The module's load limit: more than a band of the whole cube (69 kB), less than all
#: three bands (207 kB).
MAX_LOAD_BYTES = 100_000


def _settings(data_dir: Path, database_url: str | None = None, **openeo: object) -> Settings:
    settings = Settings(data_dir=data_dir, database_url=database_url, stac=StacSettings(port=0))
    if openeo:
        settings = settings.model_copy(update={"openeo": settings.openeo.model_copy(update=openeo)})
    return settings


@pytest.fixture(scope="module")
def cube_and_settings(tmp_path_factory: pytest.TempPathFactory) -> tuple[xr.Dataset, Settings]:
    from twinmesh.core.store import DatacubeStore

    data_dir = tmp_path_factory.mktemp("openeo")
    settings = _settings(data_dir, max_load_bytes=MAX_LOAD_BYTES)
    cube = build_small_twin(DatacubeStore(settings.resolved_store_url)).load()
    return cube, settings


@pytest.fixture(scope="module")
def server(cube_and_settings: tuple[xr.Dataset, Settings]) -> Iterator[OpenEOServer]:
    with running_openeo_server(cube_and_settings[1]) as running:
        yield running


@pytest.fixture
def connection(server: OpenEOServer) -> openeo.Connection:
    con = openeo.connect(server.url)
    con.authenticate_basic(*DEV_USER)
    return con


def _expected_mean(cube: xr.Dataset, bands: list[str]) -> xr.Dataset:
    """Plain xarray: the same bbox (cell centres inside), the same days (end excluded)."""
    sel = cube[bands].sel(
        x=slice(BBOX["west"], BBOX["east"]),
        y=slice(BBOX["north"], BBOX["south"]),
        t=slice(TIME[0], "2020-02-14"),
    )
    return sel.mean("t")


def _mean_cube(con: openeo.Connection, bands: list[str]) -> openeo.DataCube:
    cube = con.load_collection(COLLECTION, bands=bands)
    cube = cube.filter_bbox(**BBOX).filter_temporal(TIME)
    return cube.reduce_dimension(dimension="t", reducer="mean")


# -- discovery ---------------------------------------------------------------------------
def test_the_client_connects_and_lists_collections_and_processes(
    connection: openeo.Connection,
) -> None:
    assert connection.capabilities().api_version() == "1.2.0"
    assert COLLECTION in connection.list_collection_ids()
    meta = connection.describe_collection(COLLECTION)
    dims = meta["cube:dimensions"]
    assert set(dims) == {"t", "y", "x", "bands"}
    assert dims["bands"]["values"] == ["red", "nir", "temperature"]
    assert dims["t"]["extent"][0].startswith("2020-01-01")
    processes = {p["id"] for p in connection.list_processes()}
    assert {
        "load_collection",
        "filter_bbox",
        "reduce_dimension",
        "mean",
        "save_result",
    } <= processes
    assert {"twin_forecast", "twin_subset", "twin_regions", "load_stac"} <= processes
    assert {"netCDF", "GTiff", "ZARR", "JSON"} <= set(connection.list_output_formats())
    assert connection.describe_account()["user_id"] == DEV_USER[0]


# -- synchronous results -----------------------------------------------------------------
def test_download_as_netcdf_equals_xarray(
    connection: openeo.Connection, cube_and_settings: tuple[xr.Dataset, Settings], tmp_path: Path
) -> None:
    cube, _ = cube_and_settings
    target = tmp_path / "mean.nc"
    _mean_cube(connection, ["red", "nir"]).download(target, format="netCDF")
    got = xr.open_dataset(target, engine="h5netcdf").load()
    expected = _expected_mean(cube, ["red", "nir"])
    for band in ("red", "nir"):
        np.testing.assert_allclose(got[band].values, expected[band].values, rtol=1e-6)
    np.testing.assert_allclose(got["y"].values, expected["y"].values)


def test_download_as_gtiff_equals_xarray(
    connection: openeo.Connection, cube_and_settings: tuple[xr.Dataset, Settings], tmp_path: Path
) -> None:
    cube, _ = cube_and_settings
    target = tmp_path / "mean.tif"
    _mean_cube(connection, ["red", "nir"]).download(target, format="GTiff")
    got = rioxarray.open_rasterio(target).load()
    expected = _expected_mean(cube, ["red", "nir"])
    assert got.rio.crs.to_epsg() == 4326
    np.testing.assert_allclose(got.sel(band=1).values, expected["red"].values, rtol=1e-6)
    np.testing.assert_allclose(got.sel(band=2).values, expected["nir"].values, rtol=1e-6)
    np.testing.assert_allclose(got["x"].values, expected["x"].values)


def test_download_as_zarr_equals_xarray(
    connection: openeo.Connection, cube_and_settings: tuple[xr.Dataset, Settings], tmp_path: Path
) -> None:
    cube, _ = cube_and_settings
    target = tmp_path / "mean.zarr.zip"
    _mean_cube(connection, ["temperature"]).download(target, format="ZARR")
    assert zipfile.is_zipfile(target)
    store = zarr.storage.ZipStore(target, mode="r")
    got = xr.open_zarr(store, consolidated=False, zarr_format=3).load()
    expected = _expected_mean(cube, ["temperature"])
    np.testing.assert_allclose(
        got["temperature"].values, expected["temperature"].values, rtol=1e-6, equal_nan=True
    )


# -- errors ------------------------------------------------------------------------------
def _error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert body["message"] and body["id"] == response.headers["x-request-id"]
    return body


def test_errors_are_openeo_error_objects(
    server: OpenEOServer, connection: openeo.Connection
) -> None:
    token = connection.auth.bearer  # type: ignore[union-attr]
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        _error(http.get("/collections/nope"), 404, "CollectionNotFound")
        _error(http.get("/no/such/path"), 404, "NotFound")
        _error(
            http.post("/result", json={"process": {"process_graph": {}}}),
            401,
            "AuthenticationRequired",
        )
        _error(http.get("/me", headers={"Authorization": "Bearer basic//x.y"}), 403, "TokenInvalid")
        _error(
            http.post(
                "/result", content=b"{", headers={**auth, "content-type": "application/json"}
            ),
            400,
            "BadRequest",
        )
        _error(
            http.post("/result", content=b"{}", headers={**auth, "content-type": "text/plain"}),
            415,
            "UnsupportedMediaType",
        )
        _error(http.post("/result", json=[1], headers=auth), 400, "BadRequest")
        big = b'{"a": "' + b"x" * 2_100_000 + b'"}'
        _error(
            http.post("/result", content=big, headers={**auth, "content-type": "application/json"}),
            413,
            "PayloadTooLarge",
        )
        unknown = {
            "process": {
                "process_graph": {"a": {"process_id": "no_such", "arguments": {}, "result": True}}
            }
        }
        _error(http.post("/result", json=unknown, headers=auth), 400, "ProcessUnsupported")
        not_offered = {
            "process": {
                "process_graph": {"a": {"process_id": "run_udf", "arguments": {}, "result": True}}
            }
        }
        _error(http.post("/result", json=not_offered, headers=auth), 400, "ProcessUnsupported")
        extra = {"process": {"process_graph": {}}, "priority": 3}
        _error(http.post("/result", json=extra, headers=auth), 400, "ParameterUnsupported")
        _error(
            http.get("/jobs/6c1a15a0-0000-0000-0000-000000000000", headers=auth), 404, "JobNotFound"
        )
        blue = {
            "process": {
                "process_graph": {
                    "a": {
                        "process_id": "load_collection",
                        "arguments": {"id": COLLECTION, "bands": ["blue"]},
                        "result": True,
                    }
                }
            }
        }
        body = _error(http.post("/result", json=blue, headers=auth), 400, "BandNotAvailable")
        assert "red, nir, temperature" in str(body["message"])


def test_a_graph_loading_more_than_the_limit_is_refused_before_reading(
    connection: openeo.Connection,
) -> None:
    one_band = connection.load_collection(COLLECTION, bands=["red"])
    assert one_band.reduce_dimension(dimension="t", reducer="max").download(format="netCDF")
    with pytest.raises(OpenEoApiError) as raised:
        connection.load_collection(COLLECTION).download(format="netCDF")
    assert raised.value.code == "ProcessGraphComplexity"
    assert raised.value.http_status_code == 400
    assert "openeo.max_load_bytes" in raised.value.message


# -- batch jobs --------------------------------------------------------------------------
class Workers:
    """``twinmesh worker`` processes a test starts; each stopped by its pid."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, settings: Settings) -> subprocess.Popen[bytes]:
        env = openeo_env(settings, 0, TWINMESH_JOBS__POLL_SECONDS="0.2")
        with open(settings.data_dir / "workers.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "twinmesh.cli", "worker"],
                env=env,
                cwd=settings.data_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            stop_process(proc, timeout_s=20)


@pytest.fixture
def workers() -> Iterator[Workers]:
    started = Workers()
    yield started
    started.stop_all()


def _wait[T](predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_batch_job_results_are_zarr_and_load_stac_reads_them(
    connection: openeo.Connection,
    cube_and_settings: tuple[xr.Dataset, Settings],
    workers: Workers,
    tmp_path: Path,
) -> None:
    cube, settings = cube_and_settings
    job = _mean_cube(connection, ["red", "nir"]).create_job(out_format="GTiff", title="mean")
    assert job.status() == "created"
    job.start()
    assert job.status() in ("queued", "running")
    workers.start(settings)
    _wait(lambda: job.status() == "finished", 180, "the worker to finish the job")
    results = job.get_results()
    assets = {a.key: a for a in results.get_assets()}
    assert set(assets) == {"result.zarr.zip", "result.tif"}
    folder = tmp_path / "assets"
    results.download_files(folder)
    expected = _expected_mean(cube, ["red", "nir"])
    with zarr.storage.ZipStore(folder / "result.zarr.zip", mode="r") as store:
        stored = xr.open_zarr(store, consolidated=False, zarr_format=3).load()
    np.testing.assert_allclose(stored["red"].values, expected["red"].values, rtol=1e-6)
    tif = rioxarray.open_rasterio(folder / "result.tif").load()
    np.testing.assert_allclose(tif.sel(band=2).values, expected["nir"].values, rtol=1e-6)
    links = {link["rel"]: link["href"] for link in results.get_metadata()["links"]}
    assert links["alternate"].endswith(
        f"/collections/{SMALL}-results/items/"
        f"{results.get_metadata()['properties']['twinmesh:core_job']}"
    )

    # A second graph reads the result back with load_stac (the job's results URL).
    again = connection.load_stac_from_job(job).apply(lambda x: x * 2)
    target = tmp_path / "again.nc"
    again.download(target, format="netCDF")
    doubled = xr.open_dataset(target, engine="h5netcdf").load()
    np.testing.assert_allclose(doubled["red"].values, 2 * expected["red"].values, rtol=1e-6)
    logs = job.logs()
    assert isinstance(logs, list)
    assert any(j["id"] == job.job_id for j in connection.list_jobs())
    job.delete()
    assert all(j["id"] != job.job_id for j in connection.list_jobs())


def test_batch_results_carry_the_requested_format_beside_the_zarr(
    connection: openeo.Connection,
    cube_and_settings: tuple[xr.Dataset, Settings],
    workers: Workers,
    tmp_path: Path,
) -> None:
    """The worker writes the save_result format beside the Zarr: a second asset of the
    result's STAC item (served by the STAC API's /data routes) and the file
    ``/jobs/{id}/results`` serves, as written, not encoded on request."""
    cube, settings = cube_and_settings
    expected = _expected_mean(cube, ["red", "nir"])
    media = {"netCDF": "application/x-netcdf", "GTiff": "image/tiff; application=geotiff"}
    names = {"netCDF": "result.nc", "GTiff": "result.tif"}
    jobs = {
        fmt: _mean_cube(connection, ["red", "nir"]).create_job(out_format=fmt, title=fmt)
        for fmt in media
    }
    for job in jobs.values():
        job.start()
    workers.start(settings)
    _wait(
        lambda: all(job.status() == "finished" for job in jobs.values()),
        180,
        "the worker to finish both jobs",
    )
    core_ids, downloaded = {}, {}
    for fmt, job in jobs.items():
        results = job.get_results()
        assert {a.key for a in results.get_assets()} == {"result.zarr.zip", names[fmt]}
        assert results.get_asset(names[fmt]).metadata["type"] == media[fmt]
        folder = tmp_path / fmt
        files = {p.name for p in results.download_files(folder, include_stac_metadata=False)}
        assert files == {"result.zarr.zip", names[fmt]}
        downloaded[fmt] = folder / names[fmt]
        core_ids[fmt] = results.get_metadata()["properties"]["twinmesh:core_job"]
        # Served as the worker wrote it: nothing encoded on request for this asset.
        assert not (settings.data_dir / "openeo-assets" / core_ids[fmt] / names[fmt]).exists()
        with zarr.storage.ZipStore(folder / "result.zarr.zip", mode="r") as store:
            zipped = xr.open_zarr(store, consolidated=False, zarr_format=3).load()
        np.testing.assert_allclose(zipped["nir"].values, expected["nir"].values, rtol=1e-6)
    nc = xr.open_dataset(downloaded["netCDF"], engine="h5netcdf").load()
    for band in ("red", "nir"):
        np.testing.assert_allclose(nc[band].values, expected[band].values, rtol=1e-6)
    np.testing.assert_allclose(nc["y"].values, expected["y"].values)
    tif = rioxarray.open_rasterio(downloaded["GTiff"]).load()
    np.testing.assert_allclose(tif.sel(band=1).values, expected["red"].values, rtol=1e-6)
    np.testing.assert_allclose(tif.sel(band=2).values, expected["nir"].values, rtol=1e-6)

    with running_stac_server(settings.data_dir, "embedded") as stac:
        for fmt, core_id in core_ids.items():
            item = httpx.get(f"{stac.url}/collections/{SMALL}-results/items/{core_id}").json()
            assert set(item["assets"]) == {"result", names[fmt]}
            assert item["assets"]["result"]["type"].startswith("application/vnd+zarr")
            asset = item["assets"][names[fmt]]
            assert asset["type"] == media[fmt]
            assert asset["roles"] == ["data"]
            assert asset["href"].startswith(f"{stac.url}/data/{SMALL}/results/{core_id}/")
            served = httpx.get(asset["href"])
            assert served.status_code == 200
            assert served.content == downloaded[fmt].read_bytes()

    # A job finished before the worker wrote its format: encoded on first request.
    store_root = Path(settings.resolved_store_url)
    (written,) = store_root.glob(f"{SMALL}/results/{core_ids['GTiff']}/*/result.tif")
    written.unlink()
    again = jobs["GTiff"].get_results().get_asset("result.tif").download(tmp_path / "again.tif")
    tif = rioxarray.open_rasterio(again).load()
    np.testing.assert_allclose(tif.sel(band=2).values, expected["nir"].values, rtol=1e-6)
    assert (settings.data_dir / "openeo-assets" / core_ids["GTiff"] / "result.tif").is_file()


def test_a_batch_job_whose_format_cannot_hold_its_result_fails_with_format_unsuitable(
    connection: openeo.Connection, workers: Workers, cube_and_settings: tuple[xr.Dataset, Settings]
) -> None:
    _, settings = cube_and_settings
    cube = connection.load_collection(COLLECTION, bands=["red"]).filter_bbox(**BBOX)
    job = cube.filter_temporal(TIME).create_job(out_format="GTiff")  # time steps left
    job.start()
    workers.start(settings)
    _wait(lambda: job.status() == "error", 180, "the job to fail")
    with pytest.raises(OpenEoApiError) as raised:
        job.get_results().get_metadata()
    assert raised.value.code == "FormatUnsuitable"
    assert "reduce_dimension" in raised.value.message


def test_a_failing_graph_fails_its_job_with_the_openeo_error(
    connection: openeo.Connection, workers: Workers, cube_and_settings: tuple[xr.Dataset, Settings]
) -> None:
    _, settings = cube_and_settings
    graph = {
        "load": {
            "process_id": "load_collection",
            "arguments": {"id": COLLECTION, "bands": ["red"]},
        },
        "reduce": {
            "process_id": "reduce_dimension",
            "arguments": {
                "data": {"from_node": "load"},
                "dimension": "depth",
                "reducer": {
                    "process_graph": {
                        "m": {
                            "process_id": "mean",
                            "arguments": {"data": {"from_parameter": "data"}},
                            "result": True,
                        }
                    }
                },
            },
            "result": True,
        },
    }
    job = connection.create_job(graph)
    job.start()
    workers.start(settings)
    _wait(lambda: job.status() == "error", 180, "the job to fail")
    with pytest.raises(OpenEoApiError) as raised:
        job.get_results().get_metadata()
    assert raised.value.code == "DimensionNotAvailable"
    assert job.logs()[0]["level"] == "error"


def test_a_batch_job_survives_a_restart_of_service_and_worker(
    tmp_path: Path, database_url: str, workers: Workers
) -> None:
    from twinmesh.core.store import DatacubeStore

    settings = _settings(tmp_path, database_url)
    cube = build_small_twin(DatacubeStore(settings.resolved_store_url)).load()
    port = free_port()
    with running_openeo_server(settings, port=port) as first:
        con = openeo.connect(first.url)
        con.authenticate_basic(*DEV_USER)
        done = _mean_cube(con, ["red"]).create_job(out_format="netCDF")
        done.start()
        worker = workers.start(settings)
        _wait(lambda: done.status() == "finished", 180, "the first worker")
        before = done.get_results().get_asset("result.nc").load_bytes()
        stop_process(worker, timeout_s=20)
        queued = _mean_cube(con, ["nir"]).create_job(out_format="netCDF")
        queued.start()
        created = _mean_cube(con, ["temperature"]).create_job()
        assert queued.status() == "queued"
    # Service and worker stopped; nothing of the jobs was in their memory.
    with running_openeo_server(settings, port=port) as second:
        con = openeo.connect(second.url)
        con.authenticate_basic(*DEV_USER)
        assert con.job(done.job_id).status() == "finished"
        after = con.job(done.job_id).get_results().get_asset("result.nc").load_bytes()
        assert after == before
        assert con.job(created.job_id).status() == "created"
        assert con.job(queued.job_id).status() == "queued"
        workers.start(settings)
        _wait(lambda: con.job(queued.job_id).status() == "finished", 180, "the restarted worker")
        path = tmp_path / "nir.nc"
        con.job(queued.job_id).get_results().get_asset("result.nc").download(path)
        got = xr.open_dataset(path, engine="h5netcdf").load()
        np.testing.assert_allclose(
            got["nir"].values, _expected_mean(cube, ["nir"])["nir"].values, rtol=1e-6
        )
