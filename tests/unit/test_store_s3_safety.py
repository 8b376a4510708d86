"""Store safety on S3-compatible storage (moto's S3 server on 127.0.0.1): pins and gc
work on object stores, and ``update_twin``, without a lock there, starts again when
it sees a concurrent change before its write."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import numpy as np
import pytest
import xarray as xr

from twinmesh.core import store as store_module
from twinmesh.core.store import DatacubeStore
from twinmesh.core.twin import Twin


@pytest.fixture(scope="module")
def s3_store_options() -> Iterator[dict[str, str]]:
    import s3fs
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        options = {
            "endpoint_url": f"http://127.0.0.1:{port}",
            "key": "twinmesh",
            "secret": "twinmesh-secret",
        }
        s3fs.S3FileSystem(**options).mkdir("twins")
        yield options
    finally:
        server.stop()


def _twin(counter: int) -> Twin:
    return Twin(
        id="tw",
        title="Test twin",
        description="A tiny twin built by the store tests.",
        bbox=(9.0, 50.0, 10.0, 51.0),
        time_extent=(date(2000, 1, 1), date(2000, 1, 10)),
        regions=[],
        datasets=[],
        capabilities=[],
        license="CC0-1.0",
        properties={"counter": counter},
    )


def _with_counter(twin: Twin, counter: int) -> Twin:
    return twin.model_copy(update={"properties": {**twin.properties, "counter": counter}})


def test_a_change_seen_before_the_write_restarts_the_update(
    s3_store_options: dict[str, str], monkeypatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "twinmesh")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "twinmesh-secret")
    store = DatacubeStore("s3://twins/restart", s3_store_options)
    store.write_twin(_twin(0))
    calls: list[int] = []

    def increment_racing_another_writer(twin: Twin) -> Twin:
        calls.append(twin.properties["counter"])
        if len(calls) == 1:  # another writer gets in between our read and our write
            store.write_twin(_twin(100))
        return _with_counter(twin, twin.properties["counter"] + 1)

    updated = store.update_twin("tw", increment_racing_another_writer)
    assert calls == [0, 100]
    assert updated.properties["counter"] == 101 == store.read_twin("tw").properties["counter"]


def test_an_update_that_never_settles_gives_up(
    s3_store_options: dict[str, str], monkeypatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "twinmesh")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "twinmesh-secret")
    store = DatacubeStore("s3://twins/busy", s3_store_options)
    store.write_twin(_twin(0))
    calls: list[int] = []

    def always_raced(twin: Twin) -> Twin:
        calls.append(1)
        store.write_twin(_twin(len(calls)))
        return _with_counter(twin, -1)

    with pytest.raises(RuntimeError, match="changed under every one"):
        store.update_twin("tw", always_raced)
    assert store.read_twin("tw").properties["counter"] == len(calls)


class _TwoDaysLater(datetime):
    @classmethod
    def now(cls, tz=None):  # type: ignore[override]
        return datetime.now(tz) + timedelta(days=2)


def test_pins_and_gc_on_s3(s3_store_options: dict[str, str], monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "twinmesh")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "twinmesh-secret")
    store = DatacubeStore("s3://twins/gc", s3_store_options)
    cube = xr.Dataset({"a": (("t", "x"), np.ones((4, 3)))})
    v1, v2, v3, v4 = (store.write("tw", "cube", cube * i) for i in range(4))
    assert store.pin("tw", "cube", v1, holder="stac") == v1.rsplit("/", 1)[-1]
    assert store.pins("tw", "cube") == {"stac": v1.rsplit("/", 1)[-1]}
    assert store.gc("tw", "cube") == []  # all young
    monkeypatch.setattr(store_module, "datetime", _TwoDaysLater)
    assert store.gc("tw", "cube") == [v2.rsplit("/", 1)[-1]]
    assert store.versions("tw", "cube") == sorted(u.rsplit("/", 1)[-1] for u in (v1, v3, v4))
    assert float(store.open("tw", "cube")["a"].sum()) == 36.0
    assert store.unpin("tw", "cube", "stac") is True
    assert store.pins("tw", "cube") == {}
    assert store.gc("tw", "cube") == [v1.rsplit("/", 1)[-1]]
