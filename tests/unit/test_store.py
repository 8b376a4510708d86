"""The datacube store: versioned, atomic writes; a failed write leaves the old cube."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from twinmesh.core import errors
from twinmesh.core.store import DatacubeStore


def _cube(value: float) -> xr.Dataset:
    return xr.Dataset({"a": (("t", "x"), np.full((4, 3), value))}, coords={"t": np.arange(4)})


def test_write_then_open_round_trips(tmp_path) -> None:
    store = DatacubeStore(str(tmp_path))
    url = store.write("tw", "cube", _cube(1.0))
    assert url.endswith(".zarr")
    assert float(store.open("tw", "cube")["a"].sum()) == 12.0


def test_a_failed_write_leaves_the_previous_version_live(tmp_path, monkeypatch) -> None:
    store = DatacubeStore(str(tmp_path))
    store.write("tw", "cube", _cube(1.0))

    def crash(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_zarr", crash)
    with pytest.raises(OSError):
        store.write("tw", "cube", _cube(2.0))
    assert float(store.open("tw", "cube")["a"].sum()) == 12.0


def test_writes_keep_young_versions_and_gc_keeps_live_and_previous(tmp_path) -> None:
    """A write never deletes a version another writer may still be writing (they are
    young); gc by age removes only what is neither live nor the previous live one."""
    store = DatacubeStore(str(tmp_path))
    first = store.write("tw", "cube", _cube(1.0))
    second = store.write("tw", "cube", _cube(2.0))
    third = store.write("tw", "cube", _cube(3.0))
    assert xr.open_zarr(first, consolidated=False)["a"].sum() == 12.0  # a reader can finish
    assert len(store.versions("tw", "cube")) == 3
    assert store.gc("tw", "cube", min_age_seconds=0) == [first.rsplit("/", 1)[-1]]
    names = {u.rsplit("/", 1)[-1] for u in (second, third)}
    assert set(store.versions("tw", "cube")) == names
    assert store.live_version("tw", "cube") == third.rsplit("/", 1)[-1]
    assert float(store.open("tw", "cube")["a"].sum()) == 36.0


def test_unknown_names_raise_typed_errors(tmp_path) -> None:
    store = DatacubeStore(str(tmp_path))
    with pytest.raises(errors.DataNotReady):
        store.open("tw", "cube")
    store.write("tw", "cube", _cube(1.0))
    with pytest.raises(errors.UnknownTwin):
        store.read_twin("tw")  # a cube without a twin document is not a twin
    with pytest.raises(errors.InvalidParameter):
        store.open("tw", "../../etc")


def test_memory_filesystem_url_works_like_a_path() -> None:
    """Any fsspec URL is a store (the S3 path uses the same code)."""
    store = DatacubeStore("memory://twinmesh-test-store")
    store.write("tw", "cube", _cube(5.0))
    assert store.dataset_url("tw", "cube").startswith("memory://")
    assert float(store.open("tw", "cube")["a"].sum()) == 60.0
