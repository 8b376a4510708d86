"""The gRPC twin API as a separate process (``python -m twinmesh.grpc.server``, configured
by TWINMESH_* variables) over a private copy of the demo twins: with the generated stubs
(values equal to core's ``engine.run``, status codes, size limits, deadlines, jobs) and
with grpcurl, a client that knows nothing but what server reflection tells it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from tests.helpers.grpc_server import GrpcServer, running_grpc_server
from twinmesh.core.engine import Engine
from twinmesh.core.results import jsonable
from twinmesh.core.settings import GrpcSettings, Settings, StacSettings
from twinmesh.v1 import twin_pb2, twin_pb2_grpc

GRPCURL = Path(sys.executable).with_name("grpcurl")
#: Small enough that a whole-record simulation (about 200 KiB) is over it, big enough
#: for every other answer here (the Delaware twin's document is about 70 KiB).
MESSAGE_LIMIT = 128 * 1024
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def grpc_settings(demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A data dir of its own: a copy of the demo store and a fresh job/event database."""
    data_dir = tmp_path_factory.mktemp("grpc")
    store = data_dir / "store"
    shutil.copytree(demo_settings.resolved_store_url, store)
    return Settings(
        data_dir=data_dir,
        store_url=str(store),
        database_url=f"sqlite:///{data_dir / 'twinmesh.sqlite'}",
        stac=StacSettings(port=0),
        grpc=GrpcSettings(max_message_bytes=MESSAGE_LIMIT),
    )


@pytest.fixture(scope="module")
def server(grpc_settings: Settings) -> Iterator[GrpcServer]:
    with running_grpc_server(grpc_settings) as running:
        yield running


@pytest.fixture(scope="module")
def stub(server: GrpcServer) -> Iterator[twin_pb2_grpc.TwinServiceStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield twin_pb2_grpc.TwinServiceStub(channel)


@pytest.fixture(scope="module")
def engine(grpc_settings: Settings, server: GrpcServer) -> Iterator[Engine]:
    """Core in the test process, over the server's store and database."""
    engine = Engine(grpc_settings)
    yield engine
    engine.close()


def _error(call: Any, request: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=TIMEOUT_S, **kwargs)
    return info.value


def _reason(error: grpc.RpcError) -> str:
    """The ErrorInfo reason (core's error code) of an error's rich status."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status in the trailers"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.domain == "twinmesh.v1"
    return info.reason


def _array(variable: twin_pb2.Variable) -> np.ndarray:
    return np.array(variable.values, dtype=np.float64).reshape(tuple(variable.shape))


# -- health, twins ---------------------------------------------------------------------------
def test_the_standard_health_check_says_serving(server: GrpcServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "twinmesh.v1.TwinService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_list_twins_and_get_twin(stub: twin_pb2_grpc.TwinServiceStub, engine: Engine) -> None:
    twins = stub.ListTwins(twin_pb2.ListTwinsRequest(), timeout=TIMEOUT_S).twins
    assert {t.id for t in twins} == {"fulda", "delaware"}
    assert all("forecast" in t.capabilities for t in twins)
    twin = stub.GetTwin(twin_pb2.GetTwinRequest(twin_id="fulda"), timeout=TIMEOUT_S).twin
    core = engine.twin("fulda")
    assert [r.id for r in twin.regions] == [r.id for r in core.regions]
    assert twin.record_start == core.time_extent[0].isoformat()
    assert list(twin.bbox) == list(core.bbox)
    assert {g.id for g in twin.gauges} == {g.id for g in core.gauges}
    assert twin.regions[0].geometry["type"] in ("Polygon", "MultiPolygon")
    assert twin.document["id"] == "fulda"


# -- capabilities: the same values as core ------------------------------------------------
def test_forecast_equals_engine_run(stub: twin_pb2_grpc.TwinServiceStub, engine: Engine) -> None:
    request = twin_pb2.ForecastRequest(
        twin_id="fulda", issued="1987-06-01", members=5, lead_days=7, precipitation_factor=1.5
    )
    result = stub.Forecast(request, timeout=TIMEOUT_S).result
    expected = engine.run(
        "fulda",
        "forecast",
        {"issued": "1987-06-01", "members": 5, "lead_days": 7, "precipitation_factor": 1.5},
    )
    assert result.info.capability == "forecast" and result.info.twin_id == "fulda"
    assert result.info.model_version == expected.model_version
    assert result.info.forcing_mode == expected.forcing_mode
    assert dict(result.info.inputs)["members"] == 5
    (variable,) = result.variables
    data = expected.data["discharge_m3s"]
    assert list(variable.dims) == list(data.dims) and variable.units == "m3 s-1"
    np.testing.assert_array_equal(_array(variable), data.values)
    coords = {c.name: c for c in result.coordinates}
    assert list(coords["region"].labels) == [str(r) for r in expected.data["region"].values]
    times = [t.ToDatetime() for t in coords["t"].times]
    assert np.array(times, dtype="datetime64[ns]").tolist() == (
        expected.data["t"].values.astype("datetime64[ns]").tolist()
    )


def test_simulate_equals_engine_run(stub: twin_pb2_grpc.TwinServiceStub, engine: Engine) -> None:
    request = twin_pb2.SimulateRequest(
        twin_id="fulda", start="1985-01-01", end="1985-03-31", regions=["upper-fulda"]
    )
    (variable,) = stub.Simulate(request, timeout=TIMEOUT_S).result.variables
    expected = engine.run(
        "fulda",
        "simulate",
        {"start": "1985-01-01", "end": "1985-03-31", "regions": ["upper-fulda"]},
    )
    np.testing.assert_array_equal(_array(variable), expected.data["discharge_m3s"].values)


def test_subset_keeps_the_cubes_values(stub: twin_pb2_grpc.TwinServiceStub, engine: Engine) -> None:
    request = twin_pb2.SubsetRequest(
        twin_id="fulda",
        dataset="forcing",
        bbox=[9.5, 50.5, 9.9, 50.9],
        start="1985-06-01",
        end="1985-06-03",
        variables=["precipitation"],
    )
    result = stub.Subset(request, timeout=TIMEOUT_S).result
    expected = engine.run(
        "fulda",
        "subset",
        {
            "dataset": "forcing",
            "bbox": [9.5, 50.5, 9.9, 50.9],
            "start": "1985-06-01",
            "end": "1985-06-03",
            "variables": ["precipitation"],
        },
    )
    (variable,) = result.variables
    assert variable.name == "precipitation"
    assert variable.units == expected.data["precipitation"].attrs["units"]
    assert {c.name: c.dim for c in result.coordinates} == {
        name: coord.dims[0] for name, coord in expected.data.coords.items() if coord.ndim == 1
    }
    np.testing.assert_array_equal(_array(variable), expected.data["precipitation"].values)
    assert result.info.model_version == 0  # no model made it


def test_get_warnings_are_cores_warnings(
    stub: twin_pb2_grpc.TwinServiceStub, engine: Engine
) -> None:
    request = twin_pb2.GetWarningsRequest(
        twin_id="fulda", issued="1987-06-01", members=5, precipitation_factor=3.0
    )
    response = stub.GetWarnings(request, timeout=TIMEOUT_S)
    expected = engine.run(
        "fulda", "warnings", {"issued": "1987-06-01", "members": 5, "precipitation_factor": 3.0}
    )
    features = {f["properties"]["region_id"]: f["properties"] for f in expected.data["features"]}
    assert {w.region_id for w in response.warnings} == set(features)
    for warning in response.warnings:
        props = features[warning.region_id]
        assert warning.flood_level == props["flood_level"]
        assert dict(warning.flood_probability) == pytest.approx(props["flood_probability"])
        assert dict(warning.thresholds_m3s) == pytest.approx(props["thresholds_m3s"])
        assert warning.peak_discharge_m3s == pytest.approx(props["peak_discharge_m3s"])
        assert warning.issued == "1987-06-01" and warning.members == 5
        assert warning.geometry["type"] in ("Polygon", "MultiPolygon")
    assert response.info.capability == "warnings" and response.info.model_version >= 1
    only = stub.GetWarnings(
        twin_pb2.GetWarningsRequest(twin_id="fulda", issued="1987-06-01", members=3, bbox=[]),
        timeout=TIMEOUT_S,
    )
    assert len(only.warnings) == len(features)  # an empty bbox is "no bbox"


def test_verify_returns_cores_report(stub: twin_pb2_grpc.TwinServiceStub, engine: Engine) -> None:
    response = stub.Verify(twin_pb2.VerifyRequest(twin_id="fulda", lead_days=5), timeout=TIMEOUT_S)
    expected = engine.run("fulda", "verify", {"lead_days": 5})
    record = json_format.MessageToDict(response.record)
    assert record == json.loads(json.dumps(jsonable(expected.data)))
    assert response.info.capability == "verify" and dict(response.info.inputs)["lead_days"] == 5


# -- client mistakes are status codes with core's message ---------------------------------
def test_bad_inputs_are_invalid_argument_with_cores_message(
    stub: twin_pb2_grpc.TwinServiceStub,
) -> None:
    error = _error(stub.Forecast, twin_pb2.ForecastRequest(twin_id="fulda", members=0))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "members must be between 1 and 200" in error.details()
    assert _reason(error) == "InvalidParameter"
    error = _error(stub.Forecast, twin_pb2.ForecastRequest(twin_id="fulda", issued="yesterday"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "issued" in error.details()
    error = _error(stub.Simulate, twin_pb2.SimulateRequest(twin_id="fulda", start="1985-01-01"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "end is required" in (
        error.details()
    )
    error = _error(stub.Verify, twin_pb2.VerifyRequest(alert_probability=float("nan")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "twin_id" in error.details()
    error = _error(
        stub.Verify, twin_pb2.VerifyRequest(twin_id="fulda", alert_probability=float("nan"))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "alert_probability" in error.details()


def test_unknown_twin_and_region_are_not_found(stub: twin_pb2_grpc.TwinServiceStub) -> None:
    error = _error(stub.GetTwin, twin_pb2.GetTwinRequest(twin_id="atlantis"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "known twins: delaware, fulda" in error.details()
    assert _reason(error) == "UnknownTwin"
    error = _error(stub.Forecast, twin_pb2.ForecastRequest(twin_id="fulda", regions=["nowhere"]))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "nowhere" in error.details()
    error = _error(stub.GetTwin, twin_pb2.GetTwinRequest())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "twin_id is required" in error.details()


def test_a_result_over_the_message_limit_says_how_to_ask_for_less(
    stub: twin_pb2_grpc.TwinServiceStub,
) -> None:
    error = _error(
        stub.Simulate,
        twin_pb2.SimulateRequest(twin_id="fulda", start="1979-01-01", end="1988-12-31"),
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "grpc.max_message_bytes" in error.details()
    assert "fewer" in error.details() and "SubmitJob" in error.details()
    assert _reason(error) == "TooLarge"


def test_a_request_over_the_message_limit_is_refused(
    stub: twin_pb2_grpc.TwinServiceStub,
) -> None:
    regions = [f"region-{n:05d}-" + "x" * 90 for n in range(2000)]  # about 200 KiB
    error = _error(stub.Forecast, twin_pb2.ForecastRequest(twin_id="fulda", regions=regions))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# -- deadlines and cancellation ----------------------------------------------------------------
def _wait_for_log(server: GrpcServer, text: str, timeout_s: float = 20) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        log = server.log()
        if text in log:
            return log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the server log:\n{server.log()[-3000:]}")


def test_a_deadline_too_short_is_deadline_exceeded_and_stops_the_work(
    stub: twin_pb2_grpc.TwinServiceStub, server: GrpcServer
) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        stub.Verify(twin_pb2.VerifyRequest(twin_id="fulda"), timeout=0.3)
    error = info.value
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 5
    # the server saw the call end and its computation stopped at its next progress report
    _wait_for_log(server, "Verify ended by the client or its deadline")
    _wait_for_log(server, "Verify stopped its work")
    # and it still answers
    assert stub.ListTwins(twin_pb2.ListTwinsRequest(), timeout=TIMEOUT_S).twins


def test_a_slow_call_does_not_stall_the_others(stub: twin_pb2_grpc.TwinServiceStub) -> None:
    slow = stub.Verify.future(twin_pb2.VerifyRequest(twin_id="fulda"), timeout=TIMEOUT_S)
    time.sleep(0.1)
    started = time.monotonic()
    for _ in range(5):
        stub.GetTwin(twin_pb2.GetTwinRequest(twin_id="fulda"), timeout=TIMEOUT_S)
    assert time.monotonic() - started < 2.0
    assert slow.result().record


# -- jobs ----------------------------------------------------------------------------------
def test_submit_get_and_cancel_a_job(stub: twin_pb2_grpc.TwinServiceStub, engine: Engine) -> None:
    inputs = struct_pb2.Struct()
    inputs.update({"issued": "1987-06-01", "members": 3})
    job = stub.SubmitJob(
        twin_pb2.SubmitJobRequest(twin_id="fulda", capability="warnings", inputs=inputs),
        timeout=TIMEOUT_S,
    ).job
    assert job.status == "accepted" and job.capability == "warnings" and job.twin_id == "fulda"
    assert job.inputs["members"] == 3 and job.created.seconds > 0
    assert engine.jobs.get(job.id).status.value == "accepted"
    got = stub.GetJob(twin_pb2.GetJobRequest(job_id=job.id), timeout=TIMEOUT_S).job
    assert got.id == job.id and got.status == "accepted"
    cancelled = stub.CancelJob(twin_pb2.CancelJobRequest(job_id=job.id), timeout=TIMEOUT_S).job
    assert cancelled.status == "dismissed"
    assert engine.jobs.get(job.id).status.value == "dismissed"


def test_a_change_made_elsewhere_shows_within_the_read_cache_age(
    stub: twin_pb2_grpc.TwinServiceStub, engine: Engine, grpc_settings: Settings
) -> None:
    inputs = struct_pb2.Struct()
    inputs.update({"start": "1986-06-01", "end": "1986-06-30"})
    job = stub.SubmitJob(
        twin_pb2.SubmitJobRequest(twin_id="fulda", capability="simulate", inputs=inputs),
        timeout=TIMEOUT_S,
    ).job
    assert stub.GetJob(twin_pb2.GetJobRequest(job_id=job.id), timeout=TIMEOUT_S).job.status == (
        "accepted"
    )
    engine.jobs.cancel(job.id)  # by another process (here: core in the test process)
    age = grpc_settings.grpc.read_cache_seconds
    assert age > 0
    started = time.monotonic()
    while time.monotonic() - started < age + 5:
        got = stub.GetJob(twin_pb2.GetJobRequest(job_id=job.id), timeout=TIMEOUT_S).job
        if got.status == "dismissed":
            break
        time.sleep(0.05)
    assert got.status == "dismissed"
    # A job that is gone is NOT_FOUND once its cached answer is older than the age.
    engine.jobs.delete(job.id)
    time.sleep(age + 0.1)
    error = _error(stub.GetJob, twin_pb2.GetJobRequest(job_id=job.id))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_job_mistakes_are_status_codes(stub: twin_pb2_grpc.TwinServiceStub) -> None:
    error = _error(
        stub.GetJob, twin_pb2.GetJobRequest(job_id="00000000-0000-0000-0000-000000000000")
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND and _reason(error) == "UnknownJob"
    error = _error(stub.CancelJob, twin_pb2.CancelJobRequest(job_id="not-a-uuid"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = _error(stub.GetJob, twin_pb2.GetJobRequest())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad = struct_pb2.Struct()
    bad.update({"members": 1000})
    error = _error(
        stub.SubmitJob,
        twin_pb2.SubmitJobRequest(twin_id="fulda", capability="forecast", inputs=bad),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "members must be between 1 and 200" in error.details()
    error = _error(
        stub.SubmitJob, twin_pb2.SubmitJobRequest(twin_id="fulda", capability="teleport")
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND and "teleport" in error.details()


# -- a client that knows only what reflection tells it --------------------------------------
def _grpcurl(server: GrpcServer, *args: str, data: dict[str, Any] | None = None) -> Any:
    argv = [str(GRPCURL), "-plaintext"]
    if data is not None:
        argv += ["-d", json.dumps(data)]
    method = list(args)
    if method and "/" in method[-1]:
        argv += [*method[:-1], server.address, method[-1]]
    else:
        argv += [server.address, *method]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_grpcurl_lists_and_describes_the_services(server: GrpcServer) -> None:
    listed = _grpcurl(server, "list")
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) >= {
        "twinmesh.v1.TwinService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    described = _grpcurl(server, "describe", "twinmesh.v1.TwinService")
    assert described.returncode == 0, described.stderr
    for rpc in ("GetTwin", "Forecast", "GetWarnings", "Verify", "SubmitJob", "StreamState"):
        assert f"rpc {rpc} (" in described.stdout
    message = _grpcurl(server, "describe", "twinmesh.v1.ForecastRequest")
    assert "optional int32 lead_days = 5;" in message.stdout


def test_grpcurl_calls_get_twin_and_forecast(server: GrpcServer, engine: Engine) -> None:
    twin = _grpcurl(server, "twinmesh.v1.TwinService/GetTwin", data={"twin_id": "fulda"})
    assert twin.returncode == 0, twin.stderr
    assert json.loads(twin.stdout)["twin"]["id"] == "fulda"
    inputs = {"issued": "1987-06-01", "members": 3, "lead_days": 4, "regions": ["upper-fulda"]}
    forecast = _grpcurl(
        server, "twinmesh.v1.TwinService/Forecast", data={"twin_id": "fulda", **inputs}
    )
    assert forecast.returncode == 0, forecast.stderr
    result = json.loads(forecast.stdout)["result"]
    assert result["info"]["model_version"] == "1"  # int64 is a string in JSON
    (variable,) = result["variables"]
    expected = engine.run("fulda", "forecast", inputs).data["discharge_m3s"].values
    assert [int(n) for n in variable["shape"]] == list(expected.shape)
    np.testing.assert_allclose(variable["values"], expected.ravel(), rtol=1e-12)
    missing = _grpcurl(server, "twinmesh.v1.TwinService/GetTwin", data={"twin_id": "atlantis"})
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr and "known twins" in missing.stderr


def _json_stream(text: str) -> list[dict[str, Any]]:
    decoder, out, at = json.JSONDecoder(), [], 0
    text = text.strip()
    while at < len(text):
        doc, end = decoder.raw_decode(text, at)
        out.append(doc)
        at = end
        while at < len(text) and text[at].isspace():
            at += 1
    return out


def test_grpcurl_reads_frames_of_the_state_stream(
    server: GrpcServer, stub: twin_pb2_grpc.TwinServiceStub
) -> None:
    pytest.importorskip("twinmesh.grpc.streams", reason="the state calls are not built yet")
    stub.GetWarnings(  # warnings for the log
        twin_pb2.GetWarningsRequest(twin_id="fulda", issued="1987-06-01", members=3),
        timeout=TIMEOUT_S,
    )
    streamed = _grpcurl(
        server,
        "-max-time",
        "3",
        "twinmesh.v1.TwinService/StreamState",
        data={"twin_id": "fulda", "rate_hz": 10, "from_start": True},
    )
    frames = [doc["frame"] for doc in _json_stream(streamed.stdout)]
    assert len(frames) >= 3, streamed.stdout[-2000:] + streamed.stderr
    assert [int(f["frame"]) for f in frames] == list(range(1, len(frames) + 1))
    events = [e for f in frames for e in f.get("events", [])]
    assert any(e["kind"] == "warning" and e["twin_id"] == "fulda" for e in events)
    sequences = [int(e["sequence"]) for e in events]
    assert sequences == sorted(sequences) and int(frames[-1]["last_sequence"]) >= sequences[-1]
    assert "DeadlineExceeded" in streamed.stderr  # -max-time ended it, not the server
