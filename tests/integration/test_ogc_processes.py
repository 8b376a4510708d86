"""Twin capabilities over OGC API - Processes, against the real app on 127.0.0.1: owslib
lists and describes the processes (inputs with their ranges and units), a synchronous
execution returns data, an asynchronous one is stored in core's job store before the
201 and run by a real ``twinmesh worker`` process, and the job and its result outlive
a restart of the server and the worker — with the job database on SQLite and on
PostgreSQL. Client mistakes are 4xx in the OGC exception JSON, never 5xx."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import xarray as xr
from owslib.ogcapi.processes import Processes

from tests.helpers.ogc_server import OgcServer, ogc_env, running_ogc_server
from tests.helpers.processes import stop_process
from tests.helpers.stac_server import free_port
from twinmesh.core.capabilities import CAPABILITIES
from twinmesh.core.engine import Engine
from twinmesh.core.jobs import JobStatus
from twinmesh.core.settings import JobSettings, Settings
from twinmesh.stac.catalog import build_catalog

#: A short simulation: a second of work, so a job is seen accepted, then successful.
SIMULATE = {"twin": "fulda", "start": "1985-01-01", "end": "1985-03-31"}


def _settings(data_dir: Path, source: Settings, database_url: str) -> Settings:
    """A data dir of its own: a copy of the demo store, its catalogue, a job DB."""
    store = data_dir / "store"
    shutil.copytree(source.resolved_store_url, store)
    settings = Settings(
        data_dir=data_dir,
        store_url=str(store),
        database_url=database_url,
        jobs=JobSettings(lease_seconds=2.0, poll_seconds=0.2),
    )
    build_catalog(Engine(settings).store, settings.catalog_dir)
    return settings


@pytest.fixture(scope="module")
def ogc_settings(demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data_dir = tmp_path_factory.mktemp("ogc-processes")
    return _settings(data_dir, demo_settings, f"sqlite:///{data_dir / 'twinmesh.sqlite'}")


@pytest.fixture(scope="module")
def server(ogc_settings: Settings) -> Iterator[OgcServer]:
    with running_ogc_server(ogc_settings) as running:
        yield running


@pytest.fixture
def client(server: OgcServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as http:
        yield http


class Workers:
    """``twinmesh worker`` processes a test starts; each stopped by its pid."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, settings: Settings) -> subprocess.Popen[bytes]:
        env = ogc_env(settings, 0)
        env.update(
            TWINMESH_JOBS__LEASE_SECONDS=str(settings.jobs.lease_seconds),
            TWINMESH_JOBS__POLL_SECONDS=str(settings.jobs.poll_seconds),
        )
        with open(settings.data_dir / "workers.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "twinmesh.cli", "worker"],
                env=env,
                cwd=settings.data_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes]) -> None:
        stop_process(proc, timeout_s=20)

    def stop_all(self) -> None:
        for proc in self.procs:
            self.stop(proc)


@pytest.fixture
def workers() -> Iterator[Workers]:
    started = Workers()
    yield started
    started.stop_all()


def _wait[T](predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _status(http: httpx.Client, job_id: str, wanted: str) -> dict[str, Any] | None:
    response = http.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    assert doc["status"] not in ("failed", "dismissed"), doc
    return doc if doc["status"] == wanted else None


def _netcdf(content: bytes) -> xr.Dataset:
    return xr.load_dataset(io.BytesIO(content), engine="h5netcdf")


def _assert_ogc_exception(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert isinstance(body.get("type"), str) and body["type"]
    message = body.get("detail") or body.get("title") or body.get("description")
    assert isinstance(message, str) and message
    assert "Traceback" not in response.text
    return body


# -- describing ------------------------------------------------------------------------
def test_owslib_lists_every_capability_and_describes_inputs(server: OgcServer) -> None:
    api = Processes(server.url)
    listed = {p["id"]: p for p in api.processes()}
    assert set(listed) == set(CAPABILITIES)
    assert "inputs" not in listed["simulate"]  # the list is a summary

    forecast = api.process("forecast")
    assert set(forecast["jobControlOptions"]) == {"sync-execute", "async-execute"}
    inputs = forecast["inputs"]
    assert set(inputs["twin"]["schema"]["enum"]) == {"fulda", "delaware"}
    members = inputs["members"]["schema"]
    assert (members["minimum"], members["maximum"], members["x-units"]) == (1, 200, "1")
    lead = inputs["lead_days"]["schema"]
    assert (lead["minimum"], lead["maximum"], lead["x-units"], lead["default"]) == (1, 30, "d", 10)
    assert inputs["lead_days"]["minOccurs"] == 0 and inputs["twin"]["minOccurs"] == 1
    factor = api.process("simulate")["inputs"]["precipitation_factor"]["schema"]
    assert (factor["minimum"], factor["maximum"]) == (0.0, 10.0)
    outputs = api.process("simulate")["outputs"]["result"]["schema"]["oneOf"]
    assert [o["contentMediaType"] for o in outputs] == ["application/x-netcdf", "application/json"]


@pytest.mark.parametrize("name", sorted(CAPABILITIES))
def test_every_description_example_executes(
    server: OgcServer, client: httpx.Client, name: str
) -> None:
    description = Processes(server.url).process(name)
    response = client.post(f"/processes/{name}/execution", json=description["example"])
    assert response.status_code == 200, response.text
    schema = description["outputs"]["result"]["schema"]
    default = schema.get("oneOf", [schema])[0]["contentMediaType"]
    assert response.headers["content-type"].split(";")[0] == default
    if default == "application/x-netcdf":
        assert all(size > 0 for size in _netcdf(response.content).sizes.values())
    else:
        assert response.json()


# -- synchronous execution -------------------------------------------------------------
def test_sync_simulate_returns_netcdf_without_a_job(client: httpx.Client) -> None:
    response = client.post("/processes/simulate/execution", json={"inputs": SIMULATE})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-netcdf"
    # No job is stored for a synchronous execution, so no Location points to one.
    assert "location" not in response.headers
    ds = _netcdf(response.content)
    assert ds["discharge_m3s"].dims == ("t", "region")
    assert ds.sizes["t"] == 90 and float(ds["discharge_m3s"].min()) >= 0
    assert ds.attrs["twinmesh_capability"] == "simulate"


def test_sync_simulate_as_json_with_owslib(server: OgcServer) -> None:
    doc = Processes(server.url).execute(
        "simulate",
        inputs=SIMULATE,
        outputs={"result": {"format": {"mediaType": "application/json"}}},
    )
    result = doc["result"]  # owslib asks for response=document: {output id: value}
    assert result["data_vars"]["discharge_m3s"]["dims"] == ["t", "region"]
    assert len(result["coords"]["t"]["data"]) == 90


def test_sync_warnings_are_geojson(client: httpx.Client) -> None:
    response = client.post(
        "/processes/warnings/execution",
        json={"inputs": {"twin": "fulda", "issued": "1987-06-01", "lead_days": 5}},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/geo+json"
    doc = response.json()
    assert doc["type"] == "FeatureCollection" and doc["features"]
    assert {"region_id", "flood_level"} <= set(doc["features"][0]["properties"])


# -- client mistakes -------------------------------------------------------------------
SIMULATE_URL = "/processes/simulate/execution"
BAD_REQUESTS = [
    ("unknown twin", SIMULATE_URL, {"inputs": {**SIMULATE, "twin": "atlantis"}}, 404),
    (
        "members out of range",
        "/processes/forecast/execution",
        {"inputs": {"twin": "fulda", "issued": "1987-06-01", "members": 500}},
        400,
    ),
    ("unknown parameter", SIMULATE_URL, {"inputs": {**SIMULATE, "colour": "red"}}, 400),
    ("twin missing", SIMULATE_URL, {"inputs": {"start": "1985-01-01", "end": "1985-02-01"}}, 400),
    ("twin not a string", SIMULATE_URL, {"inputs": {**SIMULATE, "twin": 7}}, 400),
    ("inputs not an object", SIMULATE_URL, {"inputs": [1, 2]}, 400),
    ("a date that is not one", SIMULATE_URL, {"inputs": {**SIMULATE, "end": "1985-02-30"}}, 400),
    ("factor a string", SIMULATE_URL, {"inputs": {**SIMULATE, "precipitation_factor": "x"}}, 400),
    (
        "unsupported media type",
        SIMULATE_URL,
        {"inputs": SIMULATE, "outputs": {"result": {"format": {"mediaType": "image/png"}}}},
        400,
    ),
    ("unknown output", SIMULATE_URL, {"inputs": SIMULATE, "outputs": {"map": {}}}, 400),
    ("bad response form", SIMULATE_URL, {"inputs": SIMULATE, "response": "pdf"}, 400),
    ("subscriber", SIMULATE_URL, {"inputs": SIMULATE, "subscriber": "http://x"}, 400),
    ("unknown process", "/processes/teleport/execution", {"inputs": SIMULATE}, 404),
]


@pytest.mark.parametrize(
    ("url", "body", "status"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_json_requests_are_4xx_ogc_exceptions(
    client: httpx.Client, url: str, body: Any, status: int
) -> None:
    _assert_ogc_exception(client.post(url, json=body), status)
    # the same mistake asked asynchronously is refused before any job is stored
    _assert_ogc_exception(client.post(url, json=body, headers={"Prefer": "respond-async"}), status)


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[1, 2]", b"5", b'"inputs"', b"true", b"{", b"\xff\xfe"],
    ids=["text", "list", "number", "string", "bool", "truncated", "not utf-8"],
)
def test_a_body_that_is_not_a_json_object_is_a_400(client: httpx.Client, raw: bytes) -> None:
    response = client.post(SIMULATE_URL, content=raw, headers={"content-type": "application/json"})
    _assert_ogc_exception(response, 400)


def test_a_body_in_another_media_type_is_a_415(client: httpx.Client) -> None:
    body = b'{"inputs": {"twin": "fulda", "start": "1985-01-01", "end": "1985-01-31"}}'
    for media in ("text/plain", "application/x-www-form-urlencoded", ""):
        response = client.post(SIMULATE_URL, content=body, headers={"content-type": media})
        assert _assert_ogc_exception(response, 415)["type"] == "UnsupportedMediaType"


def test_unknown_jobs_are_404s(client: httpx.Client) -> None:
    for job_id in (str(uuid.uuid4()), "not-a-uuid"):
        _assert_ogc_exception(client.get(f"/jobs/{job_id}"), 404)
        _assert_ogc_exception(client.get(f"/jobs/{job_id}/results"), 404)
        _assert_ogc_exception(client.delete(f"/jobs/{job_id}"), 404)
        # It says what is missing, not only the id (pygeoapi's own answer).
        body = client.get(f"/jobs/{job_id}").json()
        assert body["type"] == "NotFound" and f"no job {job_id!r}" in body["description"]


def test_async_results_in_another_format_are_refused(client: httpx.Client) -> None:
    response = client.post(
        SIMULATE_URL,
        json={
            "inputs": SIMULATE,
            "outputs": {"result": {"format": {"mediaType": "application/json"}}},
        },
        headers={"Prefer": "respond-async"},
    )
    body = _assert_ogc_exception(response, 400)
    assert "application/x-netcdf" in body["description"]


# -- asynchronous execution ------------------------------------------------------------
def test_async_job_runs_in_a_worker_and_is_dismissed(
    ogc_settings: Settings, server: OgcServer, client: httpx.Client, workers: Workers
) -> None:
    engine = Engine(ogc_settings)
    response = client.post(
        SIMULATE_URL, json={"inputs": SIMULATE}, headers={"Prefer": "respond-async"}
    )
    assert response.status_code == 201, response.text
    assert response.headers["preference-applied"] == "respond-async"
    job_id = response.json()["jobID"]
    assert response.json()["status"] == "accepted"
    assert response.headers["location"] == f"{server.url}/jobs/{job_id}"
    # Stored in core's job store before the 201 was sent, not run by the server.
    assert engine.jobs.get(job_id).status is JobStatus.ACCEPTED
    accepted = client.get(f"/jobs/{job_id}").json()
    assert (accepted["status"], accepted["processID"], accepted["progress"]) == (
        "accepted",
        "simulate",
        0,
    )
    not_ready = _assert_ogc_exception(client.get(f"/jobs/{job_id}/results"), 404)
    assert not_ready["type"] == "ResultNotReady"
    listed = client.get("/jobs", params={"limit": 100}).json()
    assert job_id in [j["jobID"] for j in listed["jobs"]]

    workers.start(ogc_settings)
    done = _wait(lambda: _status(client, job_id, "successful"), 120, "the worker to run the job")
    assert done["progress"] == 100 and done["finished"]
    results = [link for link in done["links"] if link["rel"].endswith("/results")]
    assert results and results[0]["type"] == "application/x-netcdf"
    result = client.get(f"/jobs/{job_id}/results")
    assert result.status_code == 200, result.text
    assert result.headers["content-type"] == "application/x-netcdf"
    stored = _netcdf(result.content)  # the worker's Zarr, sent as netCDF
    sync = _netcdf(client.post(SIMULATE_URL, json={"inputs": SIMULATE}).content)
    xr.testing.assert_allclose(stored["discharge_m3s"], sync["discharge_m3s"])

    dismissed = client.delete(f"/jobs/{job_id}")
    assert dismissed.status_code == 200, dismissed.text
    assert dismissed.json()["status"] == "dismissed"
    _assert_ogc_exception(client.get(f"/jobs/{job_id}"), 404)
    _assert_ogc_exception(client.get(f"/jobs/{job_id}/results"), 404)


def test_owslib_submits_an_async_job(server: OgcServer, client: httpx.Client) -> None:
    api = Processes(server.url)
    status = api.execute("simulate", inputs=SIMULATE, response="raw", async_=True)
    assert status["status"] == "accepted"
    assert api.response_headers["Location"] == f"{server.url}/jobs/{status['jobID']}"
    assert client.get(f"/jobs/{status['jobID']}").json()["processID"] == "simulate"
    assert client.delete(f"/jobs/{status['jobID']}").status_code == 200


def test_owslib_default_async_document_is_kept_for_the_results(
    ogc_settings: Settings, server: OgcServer, client: httpx.Client, workers: Workers
) -> None:
    """owslib's execute() asks for response=document: the job remembers it (in the
    store, so any replica serves it), and its results come back as a document."""
    warnings_inputs = {"twin": "fulda", "issued": "1987-03-20", "lead_days": 5}
    status = Processes(server.url).execute("warnings", inputs=warnings_inputs, async_=True)
    job_id = status["jobID"]
    workers.start(ogc_settings)
    _wait(lambda: _status(client, job_id, "successful"), 120, "the worker to run the job")
    document = client.get(f"/jobs/{job_id}/results")
    assert document.status_code == 200, document.text
    assert document.json()["result"]["type"] == "FeatureCollection"
    # A raw request's results stay raw.
    raw = Processes(server.url).execute(
        "warnings", inputs=warnings_inputs, async_=True, response="raw"
    )
    _wait(lambda: _status(client, raw["jobID"], "successful"), 120, "the raw job")
    assert client.get(f"/jobs/{raw['jobID']}/results").json()["type"] == "FeatureCollection"


def test_dismissing_a_queued_job_means_it_never_runs(
    ogc_settings: Settings, client: httpx.Client
) -> None:
    engine = Engine(ogc_settings)
    response = client.post(
        SIMULATE_URL, json={"inputs": SIMULATE}, headers={"Prefer": "respond-async"}
    )
    job_id = response.json()["jobID"]
    assert client.delete(f"/jobs/{job_id}").status_code == 200
    _assert_ogc_exception(client.get(f"/jobs/{job_id}"), 404)
    assert job_id not in [j.id for j in engine.jobs.list(limit=1000)]


def test_a_job_dismissed_elsewhere_has_no_results(
    ogc_settings: Settings, client: httpx.Client
) -> None:
    """Dismissed through core (the CLI, openEO): its status says so and its results are a
    404, not pygeoapi's 500 for a missing result."""
    engine = Engine(ogc_settings)
    job = engine.submit("fulda", "simulate", {"start": "1985-01-01", "end": "1985-01-31"})
    engine.jobs.cancel(job.id)
    assert client.get(f"/jobs/{job.id}").json()["status"] == "dismissed"
    body = _assert_ogc_exception(client.get(f"/jobs/{job.id}/results"), 404)
    assert "dismissed" in body["description"]


def _failed_job(engine: Engine, error: dict[str, str]) -> str:
    job = engine.jobs.submit("fulda", "simulate", {"start": "1985-01-01", "end": "1985-01-31"})
    assert engine.jobs.claim("test-worker", 30.0, job_id=job.id) is not None
    assert engine.jobs.fail(job.id, "test-worker", error)
    return job.id


def test_a_failed_job_reports_its_own_error(ogc_settings: Settings, client: httpx.Client) -> None:
    """Not pygeoapi's 400 "job failed" for every failure: the job's error, with the
    status core gives its code (a server-side failure stays a 5xx, told as one)."""
    engine = Engine(ogc_settings)
    refused = _failed_job(engine, {"code": "InvalidTimeRange", "message": "no forcing in 2099"})
    status = client.get(f"/jobs/{refused}").json()
    assert status["status"] == "failed" and "no forcing in 2099" in status["message"]
    body = _assert_ogc_exception(client.get(f"/jobs/{refused}/results"), 400)
    assert body["type"] == "InvalidTimeRange" and "no forcing in 2099" in body["description"]

    lost = _failed_job(engine, {"code": "WorkerLost", "message": "its worker stopped answering"})
    assert client.get(f"/jobs/{lost}").json()["status"] == "failed"
    assert client.get(f"/jobs/{lost}/results").status_code == 500


def test_the_job_list_pages(ogc_settings: Settings, client: httpx.Client) -> None:
    engine = Engine(ogc_settings)
    for _ in range(3):
        engine.submit("fulda", "simulate", {"start": "1985-01-01", "end": "1985-01-31"})
    total = len(engine.jobs.list(limit=1000))
    first = client.get("/jobs", params={"limit": 2})
    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["jobs"]) == 2
    following = [link for link in page["links"] if link["rel"] == "next"]
    assert following and "offset=2" in following[0]["href"]
    second = client.get("/jobs", params={"limit": 2, "offset": 2}).json()
    seen = {j["jobID"] for j in page["jobs"]} | {j["jobID"] for j in second["jobs"]}
    assert len(seen) == min(4, total)
    _assert_ogc_exception(client.get("/jobs", params={"offset": "minus one"}), 400)
    _assert_ogc_exception(client.get("/jobs", params={"limit": "0"}), 400)


# -- restart -----------------------------------------------------------------------------
def test_jobs_and_results_outlive_a_restart(
    demo_settings: Settings, tmp_path: Path, database_url: str, workers: Workers
) -> None:
    settings = _settings(tmp_path, demo_settings, database_url)
    port = free_port()
    with (
        running_ogc_server(settings, port=port) as first,
        httpx.Client(base_url=first.url, timeout=120) as http,
    ):
        worker = workers.start(settings)
        finished = http.post(
            SIMULATE_URL, json={"inputs": SIMULATE}, headers={"Prefer": "respond-async"}
        ).json()["jobID"]
        _wait(lambda: _status(http, finished, "successful"), 120, "the first worker")
        before = http.get(f"/jobs/{finished}/results").content
        Workers.stop(worker)
        queued = http.post(
            SIMULATE_URL,
            json={"inputs": {**SIMULATE, "precipitation_factor": 1.2}},
            headers={"Prefer": "respond-async"},
        ).json()["jobID"]
        assert http.get(f"/jobs/{queued}").json()["status"] == "accepted"

    # Server and worker stopped; nothing of the jobs was in their memory.
    with (
        running_ogc_server(settings, port=port) as second,
        httpx.Client(base_url=second.url, timeout=120) as http,
    ):
        status = http.get(f"/jobs/{finished}").json()
        assert status["status"] == "successful"
        after = http.get(f"/jobs/{finished}/results")
        assert after.status_code == 200, after.text
        xr.testing.assert_identical(_netcdf(after.content), _netcdf(before))
        assert http.get(f"/jobs/{queued}").json()["status"] == "accepted"
        workers.start(settings)
        _wait(lambda: _status(http, queued, "successful"), 120, "the restarted worker")
        wetter = _netcdf(http.get(f"/jobs/{queued}/results").content)
        dry = _netcdf(after.content)
        assert float(wetter["discharge_m3s"].sum()) > float(dry["discharge_m3s"].sum())
        listed = {j["jobID"] for j in http.get("/jobs", params={"limit": 100}).json()["jobs"]}
        assert {finished, queued} <= listed
