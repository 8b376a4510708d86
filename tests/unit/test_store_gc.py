"""Garbage collection of datacube versions by age and reference: a writer never
removes what another writer may still be writing, nor what a published item pins."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import numpy as np
import pytest
import xarray as xr

from twinmesh.core import errors
from twinmesh.core import store as store_module
from twinmesh.core.store import DatacubeStore


def _cube(value: float) -> xr.Dataset:
    return xr.Dataset({"a": (("t", "x"), np.full((4, 3), value))}, coords={"t": np.arange(4)})


def _name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


class _TwoDaysLater(datetime):
    """The store's clock, two days on: every version written so far is old."""

    @classmethod
    def now(cls, tz=None):  # type: ignore[override]
        return datetime.now(tz) + timedelta(days=2)


def test_young_versions_survive_gc(tmp_path) -> None:
    store = DatacubeStore(str(tmp_path))
    urls = [store.write("tw", "cube", _cube(float(i))) for i in range(4)]
    assert store.gc("tw", "cube") == []
    assert store.versions("tw", "cube") == sorted(_name(u) for u in urls)


def test_old_versions_go_unless_live_previous_or_pinned(tmp_path, monkeypatch) -> None:
    store = DatacubeStore(str(tmp_path))
    v1, v2, v3, v4 = (store.write("tw", "cube", _cube(float(i))) for i in range(4))
    assert store.pin("tw", "cube", v2, holder="stac") == _name(v2)  # by URL
    store.pin("tw", "cube", _name(v1), holder="edr")  # by name
    assert store.unpin("tw", "cube", "edr") is True
    monkeypatch.setattr(store_module, "datetime", _TwoDaysLater)
    assert store.gc("tw", "cube") == [_name(v1)]
    assert store.versions("tw", "cube") == sorted(_name(u) for u in (v2, v3, v4))
    assert float(xr.open_zarr(v2, consolidated=False)["a"].sum()) == 12.0  # pinned: readable
    assert float(store.open("tw", "cube")["a"].sum()) == 36.0
    store.unpin("tw", "cube", "stac")
    assert store.gc("tw", "cube") == [_name(v2)]


def test_write_collects_versions_older_than_the_default_age(tmp_path, monkeypatch) -> None:
    store = DatacubeStore(str(tmp_path))
    v1, v2, v3 = (store.write("tw", "cube", _cube(float(i))) for i in range(3))
    monkeypatch.setattr(store_module, "datetime", _TwoDaysLater)
    v4 = store.write("tw", "cube", _cube(4.0))
    assert store.versions("tw", "cube") == sorted([_name(v3), _name(v4)])
    assert store.live_version("tw", "cube") == _name(v4)


def test_pins_are_listed_and_a_holder_holds_one_version(tmp_path) -> None:
    store = DatacubeStore(str(tmp_path))
    v1 = store.write("tw", "cube", _cube(1.0))
    v2 = store.write("tw", "cube", _cube(2.0))
    assert store.pins("tw", "cube") == {}
    store.pin("tw", "cube", v1, holder="stac")
    store.pin("tw", "cube", v1, holder="job-42")
    assert store.pins("tw", "cube") == {"stac": _name(v1), "job-42": _name(v1)}
    store.pin("tw", "cube", v2, holder="stac")  # publishing a new version moves the pin
    assert store.pins("tw", "cube") == {"stac": _name(v2), "job-42": _name(v1)}
    assert store.unpin("tw", "cube", "nobody") is False


def test_pin_refuses_what_is_not_a_version_of_that_datacube(tmp_path) -> None:
    store = DatacubeStore(str(tmp_path))
    v1 = store.write("tw", "cube", _cube(1.0))
    other = store.write("tw", "other", _cube(1.0))
    with pytest.raises(errors.InvalidParameter, match="holder id"):
        store.pin("tw", "cube", v1, holder="../stac")
    with pytest.raises(errors.InvalidParameter, match="not a version of tw/cube"):
        store.pin("tw", "cube", other, holder="stac")
    with pytest.raises(errors.InvalidParameter, match="not a datacube version"):
        store.pin("tw", "cube", "latest", holder="stac")
    with pytest.raises(errors.UnknownDataset, match="no version"):
        store.pin("tw", "cube", "v20200101T000000-abcdef.zarr", holder="stac")
    assert store.pins("tw", "cube") == {}  # a failed pin leaves nothing behind


def test_gc_leaves_what_it_did_not_write(tmp_path, monkeypatch) -> None:
    store = DatacubeStore(str(tmp_path))
    store.write("tw", "cube", _cube(1.0))
    (tmp_path / "tw" / "cube" / "by-hand.zarr").mkdir()
    monkeypatch.setattr(store_module, "datetime", _TwoDaysLater)
    assert store.gc("tw", "cube") == []
    assert (tmp_path / "tw" / "cube" / "by-hand.zarr").is_dir()
    assert store.gc("tw", "nothing-yet") == []


def test_pins_and_gc_on_a_memory_store(monkeypatch) -> None:
    store = DatacubeStore(f"memory://twinmesh-test-gc-{uuid.uuid4().hex}")
    v1, v2, v3, v4 = (store.write("tw", "cube", _cube(float(i))) for i in range(4))
    store.pin("tw", "cube", v1, holder="stac")
    monkeypatch.setattr(store_module, "datetime", _TwoDaysLater)
    assert store.gc("tw", "cube") == [_name(v2)]
    assert store.pins("tw", "cube") == {"stac": _name(v1)}
    assert float(xr.open_zarr(v1, consolidated=False)["a"].sum()) == 0.0
