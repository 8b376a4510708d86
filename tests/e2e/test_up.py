"""`twinmesh up` as a user runs it: demo built on first run, STAC API served, a
catalogue client walks and searches it, Ctrl-C stops every process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import pytest
import xarray as xr
from mesh import start_up
from pystac_client import Client

from tests.helpers.stac_server import free_port
from twinmesh.v1 import twin_pb2, twin_pb2_grpc


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory):
    data_dir: Path = tmp_path_factory.mktemp("up")
    port, ogc_port, grpc_port = free_port(), free_port(), free_port()
    env = {
        "TWINMESH_STAC__PORT": str(port),
        "TWINMESH_OGC__PORT": str(ogc_port),
        "TWINMESH_GRPC__PORT": str(grpc_port),
        "TWINMESH_OPENEO__PORT": str(free_port()),
        "TWINMESH_CALIBRATION_REPETITIONS": "800",
    }
    # As `make up &` would start it: SIGINT ignored; Ctrl-C (SIGINT) must still stop it.
    proc, lines = start_up(data_dir, env=env, as_background_job=True)
    yield {
        "url": f"http://127.0.0.1:{port}",
        "ogc_url": f"http://127.0.0.1:{ogc_port}",
        "grpc_address": f"127.0.0.1:{grpc_port}",
        "proc": proc,
        "lines": lines,
        "data_dir": data_dir,
    }
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
    datasets = (
        "forcing",
        "discharge-observed",
        "discharge-reanalysis",
        "spi-3",
        "forcing-ensemble",
    )
    cubes = {f"{twin}-{d}" for twin in ("fulda", "delaware") for d in datasets}
    models = {f"{twin}-models" for twin in ("fulda", "delaware")}
    assert collections == cubes | models
    for cid in cubes:
        items = list(client.get_collection(cid).get_items())
        assert [i.id for i in items] == [cid]
    for twin in ("fulda", "delaware"):  # the registry's model versions, STAC MLM
        (item,) = client.get_collection(f"{twin}-models").get_items()
        assert (
            item.id == f"{twin}-gr4j-cemaneige-v1" and item.properties["twinmesh:current"] is True
        )
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


def test_a_submitted_job_is_run_by_the_meshs_worker_and_published(mesh) -> None:
    cli = [sys.executable, "-m", "twinmesh.cli", "--data-dir", str(mesh["data_dir"])]
    submit = subprocess.run(
        [*cli, "warnings", "fulda", "--issued", "1987-06-01", "--members", "5", "--submit"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=mesh["data_dir"],
    )
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.split()[1]
    waited = subprocess.run(
        [*cli, "jobs", "wait", job_id, "--timeout", "120"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=mesh["data_dir"],
    )
    assert waited.returncode == 0 and "successful" in waited.stdout, waited.stdout
    client = Client.open(mesh["url"])
    (item,) = client.search(collections=["fulda-results"], ids=[job_id]).items()
    assert item.properties["twinmesh:capability"] == "warnings"
    features = (
        httpx.get(item.assets["result"].href) if "://" in item.assets["result"].href else None
    )
    doc = (
        features.json()
        if features is not None
        else json.loads(Path(item.assets["result"].href).read_text())
    )
    assert len(doc["features"]) == 6 and doc["properties"]["twinmesh:model_version"] == 1


def test_the_ogc_api_lists_the_twins_capabilities_and_datacubes(mesh) -> None:
    processes = httpx.get(f"{mesh['ogc_url']}/processes", timeout=30).json()
    assert {p["id"] for p in processes["processes"]} >= {"forecast", "warnings", "verify"}
    collections = httpx.get(f"{mesh['ogc_url']}/collections", timeout=30).json()
    assert {"fulda-forcing", "fulda-warnings", "current-warnings"} <= {
        c["id"] for c in collections["collections"]
    }


def test_the_grpc_api_serves_the_twins_and_says_how_to_call_it(mesh) -> None:
    assert mesh["grpc_address"] in "".join(mesh["lines"])
    # the "Try:" lines, printed with the ready line, show a grpcurl call (readline, not
    # select: start_up's reads may have buffered them already)
    hint = ""
    for _ in range(20):
        line = mesh["proc"].stdout.readline()
        mesh["lines"].append(line)
        if not line or "grpcurl" in line:
            hint = line
            break
    assert f'-plaintext -d \'{{"twin_id": "fulda"}}\' {mesh["grpc_address"]}' in hint
    with grpc.insecure_channel(mesh["grpc_address"]) as channel:
        stub = twin_pb2_grpc.TwinServiceStub(channel)
        twins = stub.ListTwins(twin_pb2.ListTwinsRequest(), timeout=30).twins
        assert {t.id for t in twins} == {"fulda", "delaware"}
        twin = stub.GetTwin(twin_pb2.GetTwinRequest(twin_id="fulda"), timeout=30).twin
        assert "forecast" in twin.capabilities and len(twin.regions) == 6


def test_ctrl_c_stops_every_process(mesh) -> None:
    proc = mesh["proc"]
    children = [
        int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    ]
    assert len(children) == 5  # the STAC, OGC, gRPC and openEO APIs and one worker
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "All services stopped" in out
    for pid in children:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
        )
    with pytest.raises(httpx.TransportError):
        httpx.get(mesh["url"], timeout=2)
