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

Then one graph over the whole cube (a time mean of all 526 MB) runs with the server's
memory watched: it completes with a peak resident size well below the cube's size.

Run: ``.venv/bin/python bench/openeo_overhead.py`` (about three minutes on 2 cores).
"""

from __future__ import annotations

import io
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
for entry in (str(REPO_ROOT), str(REPO_ROOT / "bench")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

import httpx  # noqa: E402
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

RUNS = 5
CELL = 0.05


def graph(spatial: dict[str, float], temporal: list[str] | None, *, mean: bool) -> dict[str, Any]:
    nodes: dict[str, Any] = {
        "load": {
            "process_id": "load_collection",
            "arguments": {"id": COLLECTION, "spatial_extent": spatial, "temporal_extent": temporal},
        }
    }
    last = "load"
    if mean:
        nodes["mean"] = {
            "process_id": "reduce_dimension",
            "arguments": {
                "data": {"from_node": "load"},
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


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="twinmesh-openeo-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        settings = settings.model_copy(
            update={"openeo": settings.openeo.model_copy(update={"max_load_bytes": 2 * 1024**3})}
        )
        store = DatacubeStore(settings.resolved_store_url)
        register_twin(store)
        print("writing the 526 MB bench cube …", flush=True)
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
            token = http.get("/credentials/basic", auth=DEV_USER).json()["access_token"]
            http.headers["Authorization"] = f"Bearer basic//{token}"
            for name, body in graphs.items():

                def service(body: dict[str, Any] = body) -> bytes:
                    response = http.post("/result", json=body)
                    response.raise_for_status()
                    return response.content

                base, served, out = paired_medians(baselines[name], service, RUNS)
                check = xr.open_dataset(io.BytesIO(out), engine="h5netcdf")
                rows.append((name, base, served, len(out), int(check["precipitation"].size)))
        # One graph over the whole cube, in a fresh server: its memory stays bounded.
        whole = graph({"west": 4.9, "south": 44.9, "east": 15.0, "north": 54.0}, None, mean=True)
        with (
            running_openeo_server(settings) as server,
            httpx.Client(base_url=server.url, timeout=600) as http,
        ):
            token = http.get("/credentials/basic", auth=DEV_USER).json()["access_token"]
            http.headers["Authorization"] = f"Bearer basic//{token}"
            http.get("/processes").raise_for_status()  # the process library imported
            idle_peak = server_peak_mb(server.pid)
            start = time.perf_counter()
            response = http.post("/result", json=whole)
            response.raise_for_status()
            whole_s = time.perf_counter() - start
            server_peak = server_peak_mb(server.pid)
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
        cube_mb = 3653 * 180 * 200 * 4 / 1e6
        print(
            f"\nwhole-cube time mean ({cube_mb:.0f} MB read): {whole_s:.2f} s; server peak RSS "
            f"{idle_peak:.0f} MB before, {server_peak:.0f} MB after: the graph added "
            f"{server_peak - idle_peak:.0f} MB for a {cube_mb:.0f} MB cube (read chunk by chunk)"
        )
        own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of the benchmark process: {own_peak:.0f} MB")


if __name__ == "__main__":
    main()
