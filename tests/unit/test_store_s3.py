"""The store on S3-compatible object storage, through s3fs, against moto's S3 server on
127.0.0.1 (a stand-in for MinIO/Ceph inside a unit test): the same code path as a
``store_url: s3://bucket/prefix`` setting."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import numpy as np
import pytest
import xarray as xr

from twinmesh.core.store import DatacubeStore


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_write_swap_and_open_on_s3(s3_endpoint: str, monkeypatch) -> None:
    import s3fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "twinmesh")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "twinmesh-secret")
    options = {"endpoint_url": s3_endpoint, "key": "twinmesh", "secret": "twinmesh-secret"}
    s3fs.S3FileSystem(**options).mkdir("cubes")
    store = DatacubeStore("s3://cubes/twins", options)
    cube = xr.Dataset({"a": (("t", "x"), np.arange(12.0).reshape(4, 3))})
    first = store.write("tw", "cube", cube)
    assert first.startswith("s3://cubes/twins/tw/cube/v")
    store.write("tw", "cube", cube * 2)
    assert float(store.open("tw", "cube")["a"].sum()) == 132.0
    reopened = xr.open_zarr(first, consolidated=False, storage_options=options)
    assert float(reopened["a"].sum()) == 66.0  # the previous version stays readable


def test_catalogue_publishes_the_endpoint_but_never_credentials() -> None:
    from twinmesh.stac.catalog import public_storage_options

    options = {
        "endpoint_url": "https://s3.example",
        "key": "AKIA",
        "secret": "s",
        "token": "t",
        "anon": False,
    }
    assert public_storage_options(options) == {"endpoint_url": "https://s3.example", "anon": False}
