"""``/result`` larger than ``openeo.result_in_memory_bytes``: written chunk by chunk to a
temporary file and streamed (bounded memory) instead of encoded in memory. Both ways
give the same values, for netCDF and zipped Zarr, and the temporary file is removed
(in-process, a small twin; the limit set to 0 so every result is streamed)."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr
from starlette.testclient import TestClient

from tests.helpers.openeo_server import build_small_twin
from twinmesh.core.settings import Settings
from twinmesh.core.store import DatacubeStore
from twinmesh.openeo.app import create_app


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> tuple[xr.Dataset, Path]:
    data_dir: Path = tmp_path_factory.mktemp("openeo-streamed")
    cube = build_small_twin(DatacubeStore(Settings(data_dir=data_dir).resolved_store_url))
    return cube.load(), data_dir


def _client(data_dir: Path, in_memory: int) -> TestClient:
    settings = Settings(data_dir=data_dir)
    settings = settings.model_copy(
        update={"openeo": settings.openeo.model_copy(update={"result_in_memory_bytes": in_memory})}
    )
    return TestClient(create_app(settings))


def _graph(fmt: str) -> dict[str, Any]:
    # a temporal selection that starts inside a dask chunk (chunks of 30 days), so the
    # lazy result's chunks are uneven, as Zarr does not allow
    return {
        "process": {
            "process_graph": {
                "load": {
                    "process_id": "load_collection",
                    "arguments": {
                        "id": "mini-grid",
                        "spatial_extent": None,
                        "temporal_extent": ["2020-01-20", "2020-03-20"],
                        "bands": ["red", "temperature"],
                    },
                },
                "save": {
                    "process_id": "save_result",
                    "arguments": {"data": {"from_node": "load"}, "format": fmt},
                    "result": True,
                },
            }
        }
    }


def _open(fmt: str, content: bytes, tmp: Path) -> xr.Dataset:
    if fmt == "netCDF":
        return xr.open_dataset(io.BytesIO(content), engine="h5netcdf").load()
    path = tmp / "result.zarr.zip"
    path.write_bytes(content)
    assert zipfile.is_zipfile(path)
    return xr.open_zarr(zarr.storage.ZipStore(path, mode="r"), consolidated=False).load()


@pytest.mark.parametrize("fmt", ["netCDF", "ZARR"])
def test_a_streamed_result_equals_the_in_memory_one_and_xarray(
    env: tuple[xr.Dataset, Path], fmt: str, tmp_path: Path
) -> None:
    cube, data_dir = env
    before = set(Path(tempfile.gettempdir()).glob("twinmesh-openeo-*"))
    with _client(data_dir, 0) as streamed, _client(data_dir, 64 * 1024**2) as in_memory:
        a = streamed.post("/result", json=_graph(fmt))
        b = in_memory.post("/result", json=_graph(fmt))
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    got, again = _open(fmt, a.content, tmp_path), _open(fmt, b.content, tmp_path)
    expected = cube[["red", "temperature"]].sel(t=slice("2020-01-20", "2020-03-19"))
    assert got.sizes["t"] == expected.sizes["t"] == 60
    for band in ("red", "temperature"):
        np.testing.assert_array_equal(got[band].values, again[band].values)
        np.testing.assert_allclose(got[band].values, expected[band].values, equal_nan=True)
    # the temporary file of the streamed answer is gone once it was sent
    assert set(Path(tempfile.gettempdir()).glob("twinmesh-openeo-*")) <= before
