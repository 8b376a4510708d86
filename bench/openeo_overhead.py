"""Benchmark: openEO ``/result`` over HTTP against plain xarray + netCDF.

Writes the 526 MB Zarr v3 cube of bench/ogc_overhead.py (float32 daily precipitation,
1979-1988 on a 180 x 200 grid, chunks {t: 366}) into a temporary store as a twin's
dataset, serves it with ``python -m twinmesh.openeo.app`` (the code path of ``twinmesh
serve openeo``, a process on 127.0.0.1) and times, as process graphs sent by POST
``/result`` and saved as netCDF:

- an area x year subset (366 x 100 x 110 = 4.0 M values),
- a point series (one cell, 3653 days: every chunk is read),
- a time-mean grid (the same area, the whole record reduced to one step),

against the baseline in the same run: plain xarray opening the same Zarr, selecting the
same cells and days and writing netCDF with the same engine (h5netcdf) to bytes. Each
number is the median of paired warm runs. Target: every ratio <= 1.15.

Then bounded memory: a second cube of 2.1 GB in memory (float32, 40 years of days on
the same grid; smooth generated values, so it is cheap to write) is larger than the
server's memory budget (``--budget-mb``, 1024 MB of peak resident size for the whole
server process, imports included). A fresh server runs two graphs over all of it while
its high-water mark (VmHWM in /proc) is watched: the time mean of the whole cube (a
reduction read chunk by chunk), then the whole cube times two saved as netCDF (a 2.1 GB
result, written chunk by chunk to a temporary file and streamed; the benchmark streams
it to disk and checks it). It prints peak / budget for each.

Run: ``.venv/bin/python bench/openeo_overhead.py`` (about five minutes on 2 cores);
``--only overhead`` or ``--only memory`` for one part, ``--runs N`` paired runs.
"""

from __future__ import annotations

import argparse
import io
import resource
import sys
import tempfile
import time
from datetime import date
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
for entry in (str(REPO_ROOT), str(REPO_ROOT / "bench")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

import dask.array as da  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
import pandas as pd  # noqa: E402
import xarray as xr  # noqa: E402
from ogc_overhead import (  # noqa: E402
    BBOX,
    COLLECTION,
    DATASET,
    POINT,
    TWIN,
    make_cube,
    paired_medians,
    register_twin,
    server_peak_mb,
)

from tests.helpers.openeo_server import DEV_USER, running_openeo_server  # noqa: E402
from twinmesh.core.settings import Settings  # noqa: E402
from twinmesh.core.store import DatacubeStore  # noqa: E402
from twinmesh.core.twin import DatasetInfo, Twin  # noqa: E402

RUNS = 5
CELL = 0.05
BIG_TWIN, BIG_DATASET = "bigbench", "forcing"
BIG_COLLECTION = f"{BIG_TWIN}-{BIG_DATASET}"
BIG_NT, BIG_NY, BIG_NX = 14610, 180, 200  # 40 years of days: 2.1 GB of float32
BUDGET_MB = 1024


def graph(
    spatial: dict[str, float] | None,
    temporal: list[str] | None,
    *,
    mean: bool,
    collection: str = COLLECTION,
    times: float | None = None,
) -> dict[str, Any]:
    nodes: dict[str, Any] = {
        "load": {
            "process_id": "load_collection",
            "arguments": {"id": collection, "spatial_extent": spatial, "temporal_extent": temporal},
        }
    }
    last = "load"
    if times is not None:
        nodes["times"] = {
            "process_id": "apply",
            "arguments": {
                "data": {"from_node": "load"},
                "process": {
                    "process_graph": {
                        "m": {
                            "process_id": "multiply",
                            "arguments": {"x": {"from_parameter": "x"}, "y": times},
                            "result": True,
                        }
                    }
                },
            },
        }
        last = "times"
    if mean:
        nodes["mean"] = {
            "process_id": "reduce_dimension",
            "arguments": {
                "data": {"from_node": last},
                "dimension": "t",
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
        }
        last = "mean"
    nodes["save"] = {
        "process_id": "save_result",
        "arguments": {"data": {"from_node": last}, "format": "netCDF"},
        "result": True,
    }
    return {"process": {"process_graph": nodes}}


def netcdf(ds: xr.Dataset | xr.DataArray) -> bytes:
    buffer = io.BytesIO()
    (ds if isinstance(ds, xr.Dataset) else ds.to_dataset()).to_netcdf(buffer, engine="h5netcdf")
    return buffer.getvalue()


def make_big_cube() -> xr.Dataset:
    """2.1 GB of float32 on the bench grid: smooth seasonal values plus a spatial
    gradient (cheap to generate and to compress, unlike the noise of the first cube)."""
    t = pd.date_range("1950-01-01", periods=BIG_NT, freq="D")
    y = np.round(45.0 + 0.05 * np.arange(BIG_NY), 3)[::-1]
    x = np.round(5.0 + 0.05 * np.arange(BIG_NX), 3)
    day = da.arange(BIG_NT, chunks=366, dtype="float32")[:, None, None]
    gy = da.from_array(np.linspace(0, 2, BIG_NY, dtype="float32"))[None, :, None]
    gx = da.from_array(np.linspace(0, 1, BIG_NX, dtype="float32"))[None, None, :]
    rain = (3 + 2 * da.sin(day * np.float32(2 * np.pi / 365.25)) + gy + gx).astype("float32")
    ds = xr.Dataset(
        {"precipitation": (("t", "y", "x"), rain, {"units": "mm"})},
        coords={"t": t.values, "y": y, "x": x},
        attrs={"title": "big bench cube", "generated": "yes"},
    )
    return ds.chunk({"t": 366, "y": -1, "x": -1})


def register_big_twin(store: DatacubeStore) -> None:
    store.write_twin(
        Twin(
            id=BIG_TWIN,
            title="Big benchmark basin",
            description="A generated 2.1 GB cube for bench/openeo_overhead.py.",
            bbox=(4.975, 44.975, 14.975, 53.975),
            time_extent=(date(1950, 1, 1), date(1989, 12, 31)),
            regions=[],
            datasets=[
                DatasetInfo(
                    id=BIG_DATASET,
                    title="Generated daily values (smooth)",
                    description="Seasonal cycle plus a gradient, float32.",
                    role="forcing",
                    variables={"precipitation": "mm"},
                    license="CC0-1.0",
                    provenance="Generated by bench/openeo_overhead.py.",
                    generated=True,
                )
            ],
            capabilities=[],
            license="CC0-1.0",
        )
    )


def _authenticated(http: httpx.Client) -> None:
    token = http.get("/credentials/basic", auth=DEV_USER).json()["access_token"]
    http.headers["Authorization"] = f"Bearer basic//{token}"


def overhead(settings: Settings, store: DatacubeStore, runs: int) -> None:
    print("writing the 526 MB bench cube …", flush=True)
    register_twin(store)
    url = store.write(TWIN, DATASET, make_cube())
    west, south, east, north = BBOX
    area = {"west": west, "south": south, "east": east, "north": north}
    px, py = POINT
    point = {
        "west": px - CELL / 2,
        "south": py - CELL / 2,
        "east": px + CELL / 2,
        "north": py + CELL / 2,
    }
    year = ["1980-01-01", "1981-01-01"]

    def opened() -> xr.Dataset:
        return xr.open_zarr(url, consolidated=False, zarr_format=3)

    def area_sel(ds: xr.Dataset) -> xr.Dataset:
        return ds.sel(x=slice(west, east), y=slice(north, south))

    baselines = {
        "area x year subset": lambda: netcdf(
            area_sel(opened()).sel(t=slice("1980-01-01", "1980-12-31")).load()
        ),
        "point series": lambda: netcdf(
            opened()
            .sel(x=slice(point["west"], point["east"]), y=slice(point["north"], point["south"]))
            .load()
        ),
        "time-mean grid": lambda: netcdf(area_sel(opened()).mean("t").compute()),
    }
    graphs = {
        "area x year subset": graph(area, year, mean=False),
        "point series": graph(point, None, mean=False),
        "time-mean grid": graph(area, None, mean=True),
    }
    rows = []
    with (
        running_openeo_server(settings) as server,
        httpx.Client(base_url=server.url, timeout=600) as http,
    ):
        _authenticated(http)
        # The timed requests go through a plain keep-alive http.client connection, as in
        # bench/ogc_overhead.py: it reads a body about as fast as curl, while httpx adds
        # ~1.5 ms per MB on the client side, which is not the service's cost.
        host, port = server.url.removeprefix("http://").rstrip("/").split(":")
        conn = HTTPConnection(host, int(port), timeout=600)
        headers = {
            "Authorization": http.headers["Authorization"],
            "Content-Type": "application/json",
        }
        for name, body in graphs.items():

            def service(body: dict[str, Any] = body) -> bytes:
                conn.request("POST", "/result", body=orjson.dumps(body), headers=headers)
                response = conn.getresponse()
                content = response.read()
                assert response.status == 200, content[:300]
                return content

            base, served, out = paired_medians(baselines[name], service, runs)
            check = xr.open_dataset(io.BytesIO(out), engine="h5netcdf")
            expected = xr.open_dataset(io.BytesIO(baselines[name]()), engine="h5netcdf")
            np.testing.assert_allclose(
                check["precipitation"].values.squeeze(),
                expected["precipitation"].values.squeeze(),
                rtol=1e-6,
            )
            rows.append((name, base, served, len(out), int(check["precipitation"].size)))
        conn.close()
    print()
    print(
        f"{'operation':<22} {'xarray s':>9} {'openEO s':>9} {'ratio':>6} "
        f"{'body MB':>8} {'values':>10}"
    )
    for name, base, served, size, values in rows:
        print(
            f"{name:<22} {base:>9.3f} {served:>9.3f} {served / base:>6.2f} "
            f"{size / 1e6:>8.1f} {values:>10,}"
        )
    print(f"(medians of {runs} paired warm runs; every result equals xarray's)")


def memory(settings: Settings, store: DatacubeStore, budget_mb: float) -> None:
    cube_mb = BIG_NT * BIG_NY * BIG_NX * 4 / 1e6
    print(f"\nwriting the {cube_mb:.0f} MB (in memory) cube …", flush=True)
    register_big_twin(store)
    url = store.write(BIG_TWIN, BIG_DATASET, make_big_cube())
    mean = graph(None, None, mean=True, collection=BIG_COLLECTION)
    doubled = graph(None, None, mean=False, collection=BIG_COLLECTION, times=2.0)
    out_path = settings.data_dir / "doubled.nc"
    with (
        running_openeo_server(settings) as server,
        httpx.Client(base_url=server.url, timeout=1800) as http,
    ):
        _authenticated(http)
        http.get("/processes").raise_for_status()
        # A small graph first, so the process library and the scheduler are loaded.
        small = graph(None, ["1950-01-01", "1950-01-03"], mean=False, collection=BIG_COLLECTION)
        http.post("/result", json=small).raise_for_status()
        idle = server_peak_mb(server.pid)
        start = time.perf_counter()
        response = http.post("/result", json=mean)
        response.raise_for_status()
        mean_s = time.perf_counter() - start
        after_mean = server_peak_mb(server.pid)
        got = xr.open_dataset(io.BytesIO(response.content), engine="h5netcdf")["precipitation"]
        with xr.open_zarr(url, consolidated=False, zarr_format=3) as ds:
            expected = ds["precipitation"].mean("t").values
        np.testing.assert_allclose(got.values.squeeze(), expected, rtol=1e-5)
        start = time.perf_counter()
        size = 0
        with http.stream("POST", "/result", json=doubled) as streamed, open(out_path, "wb") as fh:
            streamed.raise_for_status()
            for piece in streamed.iter_bytes(1024 * 1024):
                fh.write(piece)
                size += len(piece)
        doubled_s = time.perf_counter() - start
        after_doubled = server_peak_mb(server.pid)
    with (
        xr.open_dataset(out_path, engine="h5netcdf") as got_ds,
        xr.open_zarr(url, consolidated=False, zarr_format=3) as ds,
    ):
        for index in (0, BIG_NT // 2, BIG_NT - 1):
            np.testing.assert_allclose(
                got_ds["precipitation"].isel(t=index).values,
                2 * ds["precipitation"].isel(t=index).values,
            )
        assert got_ds.sizes["t"] == BIG_NT
    out_path.unlink()
    print(
        f"\nbounded memory: a {cube_mb:.0f} MB cube, budget {budget_mb:.0f} MB of server peak "
        f"RSS (VmHWM, the whole process); the server's peak was {idle:.0f} MB before"
    )
    print(f"{'graph over the whole cube':<38} {'s':>6} {'peak MB':>8} {'peak/budget':>11}")
    print(
        f"{'time mean (result 0.1 MB)':<38} {mean_s:>6.1f} {after_mean:>8.0f} "
        f"{after_mean / budget_mb:>11.2f}"
    )
    print(
        f"{f'x 2 as netCDF (result {size / 1e6:.0f} MB)':<38} {doubled_s:>6.1f} "
        f"{after_doubled:>8.0f} {after_doubled / budget_mb:>11.2f}"
    )
    print("(both results equal xarray's)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--budget-mb", type=float, default=BUDGET_MB)
    parser.add_argument("--only", choices=("overhead", "memory"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="twinmesh-openeo-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        settings = settings.model_copy(
            update={"openeo": settings.openeo.model_copy(update={"max_load_bytes": 8 * 1024**3})}
        )
        store = DatacubeStore(settings.resolved_store_url)
        if args.only != "memory":
            overhead(settings, store, args.runs)
        if args.only != "overhead":
            memory(settings, store, args.budget_mb)
        own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of the benchmark process: {own_peak:.0f} MB")


if __name__ == "__main__":
    main()
