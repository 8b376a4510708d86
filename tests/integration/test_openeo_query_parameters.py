"""The openEO service's query parameters (in-process, a small twin): a parameter a route
does not take is a 400 naming it in the openEO error shape, on every route; the ones it
takes (``limit``/``offset`` paging, the logs' ``offset``/``level``, the results'
``partial``) do what the openEO API says, and bad values are 400s, never 422s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.helpers.openeo_server import build_small_twin
from twinmesh.core.settings import Settings
from twinmesh.core.store import DatacubeStore
from twinmesh.openeo.app import create_app


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    data_dir: Path = tmp_path_factory.mktemp("openeo-query")
    settings = Settings(data_dir=data_dir)
    build_small_twin(DatacubeStore(settings.resolved_store_url))
    with TestClient(create_app(settings)) as c:
        yield c  # type: ignore[misc]


def _graph(collection: str) -> dict[str, Any]:
    return {
        "process": {
            "process_graph": {
                "load": {
                    "process_id": "load_collection",
                    "arguments": {"id": collection, "spatial_extent": None},
                },
                "save": {
                    "process_id": "save_result",
                    "arguments": {"data": {"from_node": "load"}, "format": "netCDF"},
                    "result": True,
                },
            }
        }
    }


@pytest.fixture(scope="module")
def collection(client: TestClient) -> str:
    return str(client.get("/collections").json()["collections"][0]["id"])


@pytest.fixture(scope="module")
def job(client: TestClient, collection: str) -> str:
    response = client.post("/jobs", json=_graph(collection))
    assert response.status_code == 201, response.text
    return str(response.headers["openeo-identifier"])


def _assert_names(response: Any, *names: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "ParameterUnsupported"
    assert body["id"] == response.headers["x-request-id"]
    for name in names:
        assert repr(name) in body["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/openeo",
        "/",
        "/conformance",
        "/file_formats",
        "/collections",
        "/processes",
        "/jobs",
        "/process_graphs",
        "/me",
        "/udf_runtimes",
    ],
)
def test_an_unknown_query_parameter_is_a_400_naming_it(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200
    _assert_names(client.get(path, params={"foo": "1"}), "foo")


def test_unknown_parameters_on_routes_with_ids_and_bodies(
    client: TestClient, collection: str, job: str
) -> None:
    _assert_names(client.get(f"/collections/{collection}", params={"bbox": "1,2,3,4"}), "bbox")
    _assert_names(client.get(f"/jobs/{job}", params={"foo": "1", "bar": "2"}), "foo", "bar")
    _assert_names(client.get(f"/jobs/{job}/logs", params={"since": "x"}), "since")
    # a known parameter of another route is still unknown here
    _assert_names(client.get(f"/jobs/{job}/results", params={"limit": "1"}), "limit")
    # a POST with a good body: the query is checked before any work is done
    response = client.post("/result", params={"format": "GTiff"}, json=_graph(collection))
    _assert_names(response, "format")
    _assert_names(client.post("/validation", params={"x": "1"}, json={}), "x")
    # the message says what the route takes
    message = client.get("/processes", params={"foo": "1"}).json()["message"]
    assert "limit" in message and "offset" in message


def test_limit_pages_through_the_processes_with_next_links(client: TestClient) -> None:
    everything = [p["id"] for p in client.get("/processes").json()["processes"]]
    assert len(everything) > 20
    seen: list[str] = []
    url: str | None = "/processes?limit=7"
    pages = 0
    while url:
        body = client.get(url).json()
        assert len(body["processes"]) <= 7
        seen += [p["id"] for p in body["processes"]]
        nexts = [link["href"] for link in body["links"] if link["rel"] == "next"]
        url = nexts[0].split("://", 1)[1].split("/", 1)[1] if nexts else None
        url = f"/{url}" if url else None
        pages += 1
    assert seen == everything
    assert pages == -(-len(everything) // 7)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "99999999"])
def test_a_bad_limit_is_a_400_not_a_422(client: TestClient, value: str) -> None:
    response = client.get("/collections", params={"limit": value})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "ParameterInvalid" and "limit" in body["message"]


def test_jobs_list_takes_the_clients_limit(client: TestClient, job: str) -> None:
    # the official client sends GET /jobs?limit=100
    body = client.get("/jobs", params={"limit": "100"}).json()
    assert job in [j["id"] for j in body["jobs"]]


def test_logs_offset_and_level(client: TestClient, job: str) -> None:
    body = client.get(f"/jobs/{job}/logs", params={"level": "error"}).json()
    assert body["level"] == "error" and body["logs"] == []
    bad = client.get(f"/jobs/{job}/logs", params={"level": "loud"})
    assert bad.status_code == 400 and bad.json()["code"] == "ParameterInvalid"
    missing = client.get(f"/jobs/{job}/logs", params={"offset": "no-such-entry"})
    assert missing.status_code == 400 and "no-such-entry" in missing.json()["message"]


def test_partial_results_of_a_job_not_started(client: TestClient, job: str) -> None:
    assert client.get(f"/jobs/{job}/results").json()["code"] == "JobNotFinished"
    body = client.get(f"/jobs/{job}/results", params={"partial": "true"}).json()
    assert body["openeo:status"] == "created" and body["assets"] == {}
