"""`twinmesh up` as a user runs it: demo built on first run, STAC API served, a
catalogue client walks and searches it, Ctrl-C stops every process."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
import xarray as xr
from mesh import start_up
from pystac_client import Client

from tests.helpers.stac_server import free_port


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory):
    data_dir: Path = tmp_path_factory.mktemp("up")
    port = free_port()
    env = {"TWINMESH_STAC__PORT": str(port), "TWINMESH_CALIBRATION_REPETITIONS": "800"}
    proc, lines = start_up(data_dir, env=env)
    yield {"url": f"http://127.0.0.1:{port}", "proc": proc, "lines": lines, "data_dir": data_dir}
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_up_builds_the_demo_and_prints_skill_and_urls(mesh) -> None:
    text = "".join(mesh["lines"])
    assert "calibration" in text and "validation" in text
    assert mesh["url"] in text
    assert (mesh["data_dir"] / "catalog" / "catalog.json").is_file()


def test_a_catalogue_client_walks_the_api(mesh) -> None:
    client = Client.open(mesh["url"])
    collections = {c.id for c in client.get_collections()}
    datasets = ("forcing", "discharge-observed", "discharge-reanalysis", "spi-3")
    cubes = {f"{twin}-{d}" for twin in ("fulda", "delaware") for d in datasets}
    models = {f"{twin}-models" for twin in ("fulda", "delaware")}
    assert collections == cubes | models
    for cid in cubes:
        items = list(client.get_collection(cid).get_items())
        assert [i.id for i in items] == [cid]
    for twin in ("fulda", "delaware"):  # the registry's model versions, STAC MLM
        (item,) = client.get_collection(f"{twin}-models").get_items()
        assert item.id == f"{twin}-gr4j-v1" and item.properties["twinmesh:current"] is True
        assert item.properties["mlm:architecture"]


def test_search_by_bbox_datetime_collection_then_open_the_zarr(mesh) -> None:
    client = Client.open(mesh["url"])
    found = list(
        client.search(
            bbox=[9.5, 50.5, 9.9, 50.9],
            datetime="1985-01-01/1985-12-31",
            collections=["fulda-forcing"],
        ).items()
    )
    assert [i.id for i in found] == ["fulda-forcing"]
    asset = found[0].assets["zarr"]
    cube = xr.open_dataset(asset.href, **asset.extra_fields["xarray:open_kwargs"])
    assert cube["precipitation"].sel(t="1985-06-01").shape == (19, 18)
    assert list(client.search(bbox=[0, 0, 1, 1]).items()) == []
    assert list(client.search(datetime="2000-01-01/2001-01-01").items()) == []


def test_get_search_works_for_browsers_and_curl(mesh) -> None:
    r = httpx.get(
        f"{mesh['url']}/search",
        params={
            "collections": "fulda-spi-3",
            "bbox": "9.5,50.5,9.9,50.9",
            "datetime": "1980-01-01T00:00:00Z/1981-01-01T00:00:00Z",
        },
    )
    assert r.status_code == 200, r.text
    assert [f["id"] for f in r.json()["features"]] == ["fulda-spi-3"]
    bad = httpx.get(f"{mesh['url']}/search", params={"bbox": "10,51,9,50"})
    assert bad.status_code == 400
    assert "code" in bad.json() and "description" in bad.json()


def test_ctrl_c_stops_every_process(mesh) -> None:
    proc = mesh["proc"]
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "All services stopped" in out
    with pytest.raises(httpx.TransportError):
        httpx.get(mesh["url"], timeout=2)
