"""OGC process descriptions are generated from the capability declarations: one process
per capability, every declared input with its range, units, default and description,
the twin input listing the twins that offer the capability, and the output's media
types. The execute request's OGC parts (twin, outputs, response) are checked before
core sees the inputs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from twinmesh.core import errors
from twinmesh.core.capabilities import CAPABILITIES
from twinmesh.core.capabilities.declaration import declared_range
from twinmesh.core.jobs import Job, JobStatus
from twinmesh.core.settings import Settings
from twinmesh.core.store import DatacubeStore
from twinmesh.core.twin import Region, Twin
from twinmesh.ogc.config import ogc_config
from twinmesh.ogc.context import settings_entry
from twinmesh.ogc.manager import OGC_STATUS, CoreJobManager, job_document
from twinmesh.ogc.processes import (
    OUTPUT_ID,
    CapabilityExecuteError,
    CapabilityProcessor,
    core_errors,
    output_formats,
    parse_execution,
    process_description,
)

PROCESSOR = "twinmesh.ogc.processes.CapabilityProcessor"


def _twin(twin_id: str, capabilities: list[str], regions: list[str]) -> Twin:
    square = {
        "type": "Polygon",
        "coordinates": [[[9.0, 50.0], [10.0, 50.0], [10.0, 51.0], [9.0, 51.0], [9.0, 50.0]]],
    }
    return Twin(
        id=twin_id,
        title=f"Twin {twin_id}",
        description="A twin document without data, built by the description tests.",
        bbox=(9.0, 50.0, 10.0, 51.0),
        time_extent=(date(1979, 1, 1), date(1988, 12, 31)),
        regions=[Region(id=r, name=r, geometry=square, area_km2=100.0) for r in regions],
        datasets=[],
        capabilities=capabilities,
        license="CC0-1.0",
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A store with two twin documents: one offering everything, one only subset."""
    settings = Settings(data_dir=tmp_path)
    store = DatacubeStore(settings.resolved_store_url)
    store.write_twin(_twin("alpha", list(CAPABILITIES), ["upper", "lower"]))
    store.write_twin(_twin("beta", ["subset"], ["whole"]))
    return settings


def _processor(settings: Settings, name: str) -> CapabilityProcessor:
    return CapabilityProcessor({"name": PROCESSOR, "capability": name, **settings_entry(settings)})


def test_every_capability_is_a_process_in_the_generated_config(settings: Settings) -> None:
    resources = ogc_config(settings)["resources"]
    processes = {k: v for k, v in resources.items() if v["type"] == "process"}
    missing = sorted(set(CAPABILITIES) - set(processes))
    assert not missing, f"capabilities without an OGC process: {missing}"
    for name, resource in processes.items():
        assert resource["processor"]["name"] == PROCESSOR
        assert resource["processor"]["capability"] == name
    manager = ogc_config(settings)["server"]["manager"]
    assert manager["name"] == "twinmesh.ogc.manager.CoreJobManager"


@pytest.mark.parametrize("name", sorted(CAPABILITIES))
def test_the_description_states_every_declared_input(settings: Settings, name: str) -> None:
    cap = CAPABILITIES[name]
    description = _processor(settings, name).metadata
    assert description["id"] == name
    assert description["title"] == cap.title
    assert description["description"] == cap.description
    assert set(description["jobControlOptions"]) == {"sync-execute", "async-execute"}
    inputs = description["inputs"]
    assert list(inputs) == ["twin", *cap.inputs.model_fields]
    for field, info in cap.inputs.model_fields.items():
        entry = inputs[field]
        schema = entry["schema"]
        assert entry["description"] == info.description
        assert entry["minOccurs"] == (1 if info.is_required() else 0)
        assert entry["maxOccurs"] == 1
        low, high = declared_range(info)
        if low is not None:
            assert schema["minimum"] == low, field
        if high is not None:
            assert schema["maximum"] == high, field
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if "x-units" in extra:
            assert schema["x-units"] == extra["x-units"], field
        if not info.is_required() and info.default is not None:
            assert schema["default"] == info.default
        # OpenAPI 3.0 schemas (what OGC process descriptions use): no null type, no $ref.
        text = orjson.dumps(schema).decode()
        assert '"null"' not in text and "$ref" not in text, field


def test_ranges_and_units_as_a_client_reads_them(settings: Settings) -> None:
    inputs = _processor(settings, "forecast").metadata["inputs"]
    members = inputs["members"]["schema"]
    assert (members["type"], members["minimum"], members["maximum"]) == ("integer", 1, 200)
    assert members["nullable"] is True
    lead = inputs["lead_days"]["schema"]
    assert (lead["minimum"], lead["maximum"], lead["x-units"], lead["default"]) == (1, 30, "d", 10)
    assert inputs["issued"]["schema"] == {
        "type": "string",
        "format": "date",
        "default": None,
        "nullable": True,
        "example": "1987-06-01",
    }


def test_the_twin_input_lists_the_twins_offering_the_capability(settings: Settings) -> None:
    assert _processor(settings, "subset").metadata["inputs"]["twin"]["schema"]["enum"] == [
        "alpha",
        "beta",
    ]
    twin = _processor(settings, "forecast").metadata["inputs"]["twin"]
    assert twin["schema"]["enum"] == ["alpha"] and twin["minOccurs"] == 1


def test_with_no_twin_the_twin_input_is_a_plain_string() -> None:
    description = process_description(CAPABILITIES["simulate"], [])
    assert description["inputs"]["twin"]["schema"] == {"type": "string"}
    assert "twin" not in description["example"]["inputs"]


@pytest.mark.parametrize("name", sorted(CAPABILITIES))
def test_the_example_is_a_valid_request(settings: Settings, name: str) -> None:
    cap = CAPABILITIES[name]
    example = _processor(settings, name).metadata["example"]["inputs"]
    assert example["twin"] in {"alpha", "beta"}
    cap.validate({k: v for k, v in example.items() if k != "twin"})
    twin = _twin("alpha", list(CAPABILITIES), ["upper", "lower"])
    # Example regions the twin does not have are left out rather than shown broken.
    assert set(example.get("regions", [])) <= {r.id for r in twin.regions}
    for field, schema in cap.parameter_schemas().items():
        if schema.get("examples") and schema["x-required"]:
            assert example[field] == schema["examples"][0]


@pytest.mark.parametrize("name", sorted(CAPABILITIES))
def test_the_output_lists_the_media_types_it_is_sent_in(settings: Settings, name: str) -> None:
    cap = CAPABILITIES[name]
    outputs = _processor(settings, name).metadata["outputs"]
    assert list(outputs) == [OUTPUT_ID]
    schema = outputs[OUTPUT_ID]["schema"]
    alternatives = schema.get("oneOf", [schema])
    media = [a["contentMediaType"] for a in alternatives]
    assert media == [f.media_type for f in output_formats(cap)]
    assert schema["x-twinmesh-kind"] == cap.output.kind.value
    assert "$ref" not in orjson.dumps(schema).decode()
    if cap.output.kind.value == "coverage":
        assert media[0] == "application/x-netcdf"


# -- the execute request's OGC parts ----------------------------------------------------
def _fails(*args: Any) -> CapabilityExecuteError:
    with pytest.raises(CapabilityExecuteError) as info:
        parse_execution(CAPABILITIES["simulate"], *args)
    return info.value


@pytest.mark.parametrize(
    ("args", "status", "fragment"),
    [
        (([],), 400, "JSON object"),
        (("x",), 400, "JSON object"),
        (({"start": "1985-01-01"},), 400, "twin is required"),
        (({"twin": 5},), 400, "a string"),
        (({"twin": "alpha"}, {"other": {}}), 400, "unknown output 'other'"),
        (({"twin": "alpha"}, []), 400, "outputs is an object"),
        (({"twin": "alpha"}, {"result": {"transmissionMode": "reference"}}), 400, "by value"),
        (({"twin": "alpha"}, {"result": {"format": {"mediaType": "image/png"}}}), 400, "png"),
        (({"twin": "alpha"}, {"result": {"format": "json"}}), 400, "mediaType"),
        (({"twin": "alpha"}, {"result": {"bogus": 1}}), 400, "bogus"),
        (({"twin": "alpha"}, None, "both"), 400, "'raw' or 'document'"),
    ],
)
def test_bad_execute_requests_are_400s_naming_the_problem(
    args: tuple[Any, ...], status: int, fragment: str
) -> None:
    error = _fails(*args)
    assert error.http_status_code == status
    assert fragment in error.message


def test_an_output_format_is_chosen_by_media_type() -> None:
    simulate = CAPABILITIES["simulate"]
    chosen = parse_execution(
        simulate,
        {"twin": "alpha", "start": "1985-01-01"},
        {"result": {"format": {"mediaType": "application/json"}, "transmissionMode": "value"}},
        "document",
    )
    assert chosen.format.name == "json" and chosen.document
    assert chosen.inputs == {"start": "1985-01-01"} and chosen.twin == "alpha"
    assert parse_execution(simulate, {"twin": "alpha"}).format.name == "netcdf"


def test_core_job_statuses_all_map_to_ogc_statuses() -> None:
    assert set(OGC_STATUS) == set(JobStatus)
    assert all(OGC_STATUS[s].value == s.value for s in JobStatus)


def test_the_generated_manager_is_asynchronous_and_knows_every_process(
    settings: Settings,
) -> None:
    from pygeoapi.process.manager.base import get_manager

    manager = get_manager(ogc_config(settings))
    assert isinstance(manager, CoreJobManager)
    assert manager.is_async and not manager.supports_subscribing
    assert set(manager.processes) == set(CAPABILITIES)
    assert isinstance(manager.get_processor("verify"), CapabilityProcessor)


# -- core errors as OGC exceptions; core jobs as pygeoapi's job dicts ----------------------
@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (
            errors.InvalidParameter("members must be between 1 and 200"),
            400,
            "InvalidParameterValue",
        ),
        (errors.OutOfExtent("bbox outside the twin"), 400, "InvalidParameterValue"),
        (errors.UnknownTwin("unknown twin 'x'"), 404, "UnknownTwin"),
        (errors.CapabilityNotOffered("beta does not offer forecast"), 404, "CapabilityNotOffered"),
        (errors.TooLarge("the result would be 900 MiB"), 413, "TooLarge"),
        (errors.DataNotReady("run twinmesh demo init"), 503, "DataNotReady"),
    ],
)
def test_core_errors_keep_their_status_and_message(
    error: errors.TwinmeshError, status: int, code: str
) -> None:
    with pytest.raises(CapabilityExecuteError) as info, core_errors():
        raise error
    assert info.value.http_status_code == status
    assert info.value.ogc_exception_code == code
    assert info.value.message == error.message


def test_an_unexpected_error_is_a_500_naming_only_a_reference() -> None:
    with pytest.raises(CapabilityExecuteError) as info, core_errors():
        raise KeyError("/secret/path/in/the/store")
    assert info.value.http_status_code == 500
    assert info.value.message.startswith("internal error (ref ")
    assert "secret" not in info.value.message


def _job(status: str, started: datetime | None) -> Job:
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return Job(
        id="0b0e9c7e-6a43-4c0c-9f0e-2f7f1d7f3a11",
        twin="alpha",
        capability="simulate",
        inputs={"start": "1985-01-01"},
        owner=None,
        status=JobStatus(status),
        progress=0.456,
        message=None,
        created=created,
        updated=created,
        started=started,
        finished=None,
        error=None,
        result=None,
        model_version=None,
        worker=None,
        lease_until=None,
        attempts=0,
    )


def test_a_job_document_is_what_pygeoapi_reads() -> None:
    queued = job_document(_job("accepted", None))
    assert queued["identifier"] == "0b0e9c7e-6a43-4c0c-9f0e-2f7f1d7f3a11"
    assert (queued["process_id"], queued["status"], queued["progress"]) == (
        "simulate",
        "accepted",
        46,
    )
    assert queued["parameters"] == {"twin": "alpha", "start": "1985-01-01"}
    assert queued["created"] == "2026-01-02T03:04:05.000000Z"
    # pygeoapi sorts job lists by 'started': a string even before a worker started it
    assert queued["started"] == queued["created"]
    assert queued["mimetype"] == "application/x-netcdf"
    running = job_document(_job("running", datetime(2026, 1, 2, 3, 5, tzinfo=UTC)))
    assert running["started"] == "2026-01-02T03:05:00.000000Z"
    assert sorted([running, queued], key=lambda j: j["started"])[0] is queued
