"""The gRPC contract (protos/twinmesh/v1) against core's declarations and its generated
code: regenerating changes nothing, buf lint passes, every capability has its call with
one field per declared input, units are in the names, and the translation rules
(request → inputs, result → response, core error → status code) hold."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
import types
import typing
from datetime import date
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import xarray as xr
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.rpc import error_details_pb2, status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from twinmesh.core import errors
from twinmesh.core.capabilities import CAPABILITIES
from twinmesh.core.capabilities.declaration import field_type
from twinmesh.core.events import ObservationConflict
from twinmesh.core.results import OutputKind, Result
from twinmesh.grpc import convert
from twinmesh.grpc.errors import abort_for, status_code_for
from twinmesh.grpc.server import CAPABILITY_CALLS, SERVICE_NAME, TwinServicer
from twinmesh.v1 import twin_pb2, twin_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVICE = twin_pb2.DESCRIPTOR.services_by_name["TwinService"]

#: What a declared unit (``x-units``) looks like in a field name, and the word a field's
#: proto comment uses for it where the name is core's and carries no suffix.
UNIT_SUFFIXES: dict[str, tuple[str, str]] = {
    "d": ("_days", "days"),
    "a": ("_years", "years"),
    "m3 s-1": ("_m3s", "m3 s-1"),
    "mm": ("_mm", "mm"),
    "mm d-1": ("_mm_per_day", "mm per day"),
    "degC": ("_degc", "degrees Celsius"),
    "km2": ("_km2", "km2"),
    "degrees": ("_deg", "degrees"),
    "Hz": ("_hz", "Hz"),
    "s": ("_s", "seconds"),
}


# -- generated code and lint ---------------------------------------------------------------
def test_regenerating_the_code_changes_nothing(tmp_path: Path) -> None:
    """The CI check: the committed twinmesh/v1 modules are what the protos generate."""
    subprocess.run([ROOT / "scripts" / "protos", "--out", tmp_path], check=True, cwd=ROOT)
    generated = {p.name: p.read_bytes() for p in (tmp_path / "twinmesh" / "v1").iterdir()}
    committed = {
        p.name: p.read_bytes()
        for p in (ROOT / "twinmesh" / "v1").iterdir()
        if p.is_file() and p.name != "__init__.py"
    }
    assert sorted(generated) == sorted(committed)
    stale = [name for name in generated if generated[name] != committed[name]]
    assert not stale, f"out of date (run scripts/protos): {stale}"


def test_buf_lint_passes() -> None:
    lint = subprocess.run([BIN / "buf", "lint"], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_the_generated_code_matches_the_installed_grpc_and_protobuf() -> None:
    """The generated modules refuse to import under an older grpcio or protobuf than
    they were made with (the import above would have raised); say which ones."""
    from google.protobuf import __version__ as protobuf_version

    def version(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in text.split(".")[:3])

    assert version(grpc.__version__) >= version(twin_pb2_grpc.GRPC_GENERATED_VERSION)
    assert version(protobuf_version)[0] == 7


# -- one call per capability -----------------------------------------------------------------
def _call_of(capability: str) -> str:
    calls = [m for m, c in CAPABILITY_CALLS.items() if c == capability]
    assert calls, (
        f"capability {capability!r} has no gRPC call: add its request and response messages "
        "and an rpc to protos/twinmesh/v1/twin.proto, run scripts/protos, and map the method "
        "to it in twinmesh.grpc.server.CAPABILITY_CALLS"
    )
    return calls[0]


@pytest.mark.parametrize("capability", sorted(CAPABILITIES))
def test_every_capability_has_a_unary_call_with_a_field_per_declared_input(
    capability: str,
) -> None:
    method = SERVICE.methods_by_name.get(_call_of(capability))
    assert method is not None, f"{_call_of(capability)} is not an rpc of {SERVICE.full_name}"
    assert not method.client_streaming and not method.server_streaming
    request = method.input_type
    declared = set(CAPABILITIES[capability].inputs.model_fields)
    fields = set(request.fields_by_name)
    assert convert.TWIN_FIELD in fields
    missing = declared - fields
    assert not missing, f"{request.name} lacks fields for the inputs {sorted(missing)}"
    extra = fields - declared - {convert.TWIN_FIELD}
    assert not extra, f"{request.name} has fields {sorted(extra)} that are no inputs"
    # The response holds the capability's kind of result ...
    convert.response_field(method.output_type, CAPABILITIES[capability].output.kind)
    # ... and the server implements the call (not the generated UNIMPLEMENTED stub).
    assert getattr(TwinServicer, method.name) is not getattr(
        twin_pb2_grpc.TwinServiceServicer, method.name
    )


def test_every_call_of_the_service_is_implemented() -> None:
    for method in SERVICE.methods:
        assert getattr(TwinServicer, method.name) is not getattr(
            twin_pb2_grpc.TwinServiceServicer, method.name
        ), method.name
    assert SERVICE_NAME == "twinmesh.v1.TwinService"


_PROTO_TYPES: dict[Any, set[int]] = {
    int: {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64},
    float: {FieldDescriptor.TYPE_DOUBLE},
    str: {FieldDescriptor.TYPE_STRING},
    date: {FieldDescriptor.TYPE_STRING},
    bool: {FieldDescriptor.TYPE_BOOL},
}


def _allowed_types(annotation: Any) -> tuple[bool, set[int]]:
    """(repeated, proto types) a declared input may be sent as."""
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return True, _allowed_types(item)[1]
    if origin is typing.Literal:
        return False, {FieldDescriptor.TYPE_STRING}
    if origin in (typing.Union, types.UnionType):
        # int | str (a model version number or alias): the text, core decides.
        return False, {FieldDescriptor.TYPE_STRING}
    return False, _PROTO_TYPES[annotation]


@pytest.mark.parametrize("capability", sorted(CAPABILITIES))
def test_request_fields_can_carry_every_declared_value(capability: str) -> None:
    request = SERVICE.methods_by_name[_call_of(capability)].input_type
    for name, info in CAPABILITIES[capability].inputs.model_fields.items():
        field = request.fields_by_name[name]
        repeated, types = _allowed_types(field_type(info))
        assert field.is_repeated == repeated, name
        assert field.type in types, f"{request.name}.{name}: {field.type} not in {types}"
        numeric = field.type != FieldDescriptor.TYPE_STRING and not repeated
        if numeric and not info.is_required():
            # 0 can be a real value: an unset number must be told apart from it.
            assert field.has_presence, f"{request.name}.{name} must be proto3 optional"


@pytest.fixture(scope="module")
def field_comments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Leading comments of every message field of twin.proto, keyed Message.field."""
    target = tmp_path_factory.mktemp("descriptors") / "twin.binpb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            "protos",
            "--include_source_info",
            f"--descriptor_set_out={target}",
            "protos/twinmesh/v1/twin.proto",
        ],
        cwd=ROOT,
        check=True,
    )
    (proto,) = descriptor_pb2.FileDescriptorSet.FromString(target.read_bytes()).file
    comments = {}
    for location in proto.source_code_info.location:
        path = list(location.path)
        # 4: message_type, 2: field (descriptor.proto's field numbers)
        if len(path) == 4 and path[0] == 4 and path[2] == 2:
            message = proto.message_type[path[1]]
            comments[f"{message.name}.{message.field[path[3]].name}"] = location.leading_comments
    return comments


@pytest.mark.parametrize("capability", sorted(CAPABILITIES))
def test_field_names_carry_units_where_the_declaration_has_them(
    capability: str, field_comments: dict[str, str]
) -> None:
    request = SERVICE.methods_by_name[_call_of(capability)].input_type
    for name, info in CAPABILITIES[capability].inputs.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        unit = extra.get("x-units")
        if unit in (None, "1"):
            continue
        assert unit in UNIT_SUFFIXES, f"{name}: add the unit {unit!r} to UNIT_SUFFIXES"
        suffix, word = UNIT_SUFFIXES[str(unit)]
        comment = field_comments.get(f"{request.name}.{name}", "")
        assert name.endswith(suffix) or word in comment, (
            f"{request.name}.{name} is in {unit}: say so in its name ({suffix}) or in its "
            f"comment ({word!r})"
        )


def test_coverage_variables_declare_their_units_in_their_names() -> None:
    for capability in CAPABILITIES.values():
        if capability.output.kind is not OutputKind.COVERAGE:
            continue
        for variable, unit in getattr(capability.output, "variables", {}).items():
            if unit in UNIT_SUFFIXES:
                assert variable.endswith(UNIT_SUFFIXES[unit][0]), (capability.name, variable)


# -- translation -----------------------------------------------------------------------------
def test_unset_fields_leave_the_input_to_cores_default() -> None:
    twin, inputs = convert.capability_inputs(
        twin_pb2.ForecastRequest(twin_id="fulda"), CAPABILITIES["forecast"]
    )
    assert twin == "fulda" and inputs == {}
    _, inputs = convert.capability_inputs(
        twin_pb2.ForecastRequest(
            twin_id="fulda",
            issued="1987-06-01",
            members=5,
            precipitation_factor=0.0,
            regions=["upper-fulda"],
        ),
        CAPABILITIES["forecast"],
    )
    # an explicit 0 of an optional field is a value, not "unset"
    assert inputs == {
        "issued": "1987-06-01",
        "members": 5,
        "precipitation_factor": 0.0,
        "regions": ["upper-fulda"],
    }
    CAPABILITIES["forecast"].validate(inputs)


def test_a_request_without_a_twin_is_invalid() -> None:
    with pytest.raises(errors.InvalidParameter, match="twin_id is required"):
        convert.capability_inputs(twin_pb2.VerifyRequest(), CAPABILITIES["verify"])


def test_a_set_field_that_is_no_input_is_refused_by_name() -> None:
    with pytest.raises(errors.InvalidParameter, match="bbox is not an input of forecast"):
        convert.capability_inputs(
            twin_pb2.GetWarningsRequest(twin_id="fulda", bbox=[1, 2, 3, 4]),
            CAPABILITIES["forecast"],
        )


def test_a_coverage_becomes_coordinates_and_row_major_variables() -> None:
    times = np.array(["1987-06-02", "1987-06-03"], dtype="datetime64[ns]")
    values = np.array([[[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]]])  # member, t, region
    data = xr.Dataset(
        {"discharge_m3s": (("member", "t", "region"), values, {"units": "m3 s-1"})},
        coords={
            "member": [0],
            "t": times,
            "region": ["a", "b", "c"],
            "spatial_ref": 0,
        },
    )
    result = Result(
        OutputKind.COVERAGE,
        "forecast",
        "fulda",
        data,
        model_version=3,
        forcing_mode="observed forcing",
        inputs={"issued": date(1987, 6, 1), "members": None, "precipitation_factor": 1.0},
    )
    message = convert.result_response(result, twin_pb2.ForecastResponse).result
    assert message.info.model_version == 3 and message.info.forcing_mode == "observed forcing"
    assert dict(message.info.inputs)["issued"] == "1987-06-01"
    coords = {c.name: c for c in message.coordinates}
    assert set(coords) == {"member", "t", "region"}  # scalar spatial_ref left out
    assert list(coords["member"].values) == [0.0]
    assert list(coords["region"].labels) == ["a", "b", "c"]
    assert [t.ToJsonString() for t in coords["t"].times] == [
        "1987-06-02T00:00:00Z",
        "1987-06-03T00:00:00Z",
    ]
    (variable,) = message.variables
    assert (variable.name, variable.units) == ("discharge_m3s", "m3 s-1")
    assert list(variable.dims) == ["member", "t", "region"] and list(variable.shape) == [1, 2, 3]
    back = np.array(variable.values).reshape(tuple(variable.shape))
    np.testing.assert_array_equal(back, values)  # NaN stays NaN
    assert convert.coverage_size_bytes(data) <= message.ByteSize()


def test_features_become_one_message_per_feature_from_their_properties() -> None:
    feature = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [9.6, 50.5]},
        "properties": {
            "twin_id": "fulda",
            "region_id": "upper-fulda",
            "flood_level": "medium",
            "flood_probability": {"2": 0.5, "5": 0.1},
            "peak_discharge_m3s": 51.2,
            "spi": None,
            "issued": "1987-06-01",
            "members": 9,
            "notes": ["a note"],
            "precipitation_factor": 1.0,  # in info.inputs; the message has no field for it
        },
    }
    result = Result(
        OutputKind.FEATURES,
        "warnings",
        "fulda",
        {"type": "FeatureCollection", "features": [feature]},
        model_version=1,
    )
    response = convert.result_response(result, twin_pb2.GetWarningsResponse)
    (warning,) = response.warnings
    assert warning.region_id == "upper-fulda" and warning.flood_level == "medium"
    assert dict(warning.flood_probability) == {"2": 0.5, "5": 0.1}
    assert not warning.HasField("spi") and warning.members == 9
    assert list(warning.notes) == ["a note"]
    assert warning.geometry["type"] == "Point"
    assert response.info.capability == "warnings"


def test_a_record_becomes_a_struct_without_nan() -> None:
    result = Result(OutputKind.RECORD, "verify", "fulda", {"pod": 0.8, "far": float("nan")})
    response = convert.result_response(result, twin_pb2.VerifyResponse)
    assert response.record["pod"] == 0.8
    assert response.record.fields["far"].WhichOneof("kind") == "null_value"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidParameter("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.InvalidTimeRange("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.UnknownTwin("x"), grpc.StatusCode.NOT_FOUND),
        (errors.UnknownRegion("x"), grpc.StatusCode.NOT_FOUND),
        (errors.UnknownJob("x"), grpc.StatusCode.NOT_FOUND),
        (errors.CapabilityNotOffered("x"), grpc.StatusCode.NOT_FOUND),
        (errors.TooLarge("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.JobNotFinished("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.DataNotReady("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (ObservationConflict("x", []), grpc.StatusCode.ALREADY_EXISTS),
        (errors.TwinmeshError("x"), grpc.StatusCode.INTERNAL),
    ],
)
def test_core_errors_map_to_status_codes(
    error: errors.TwinmeshError, code: grpc.StatusCode
) -> None:
    assert status_code_for(error) == code


class _Context:
    """What abort_for needs of a grpc.aio.ServicerContext: ``abort`` records and raises."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str, Any] | None = None

    async def abort(self, code: grpc.StatusCode, details: str, trailing_metadata: Any) -> None:
        self.aborted = (code, details, trailing_metadata)
        raise grpc.aio.AbortError()


def _abort_with(exc: BaseException) -> tuple[grpc.StatusCode, str, Any]:
    context = _Context()
    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(abort_for(context, exc))  # type: ignore[arg-type]
    assert context.aborted is not None
    return context.aborted


def test_a_core_error_keeps_its_message_and_names_its_code_in_error_info() -> None:
    code, details, metadata = _abort_with(errors.UnknownRegion("no region 'x'; its regions: a"))
    assert code == grpc.StatusCode.NOT_FOUND and details == "no region 'x'; its regions: a"
    (key, value), *_ = metadata
    assert key == "grpc-status-details-bin"
    status = status_pb2.Status.FromString(value)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("UnknownRegion", "twinmesh.v1")


def test_an_unexpected_error_is_internal_with_a_reference_the_log_repeats(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        raise KeyError("/srv/secret/path")
    except KeyError as exc:
        with caplog.at_level(logging.ERROR, logger="twinmesh.grpc"):
            code, details, _ = _abort_with(exc)
    assert code == grpc.StatusCode.INTERNAL
    ref = re.fullmatch(r"internal error \(ref ([0-9a-f]{12})\)", details)
    assert ref, details  # nothing of the exception's text reaches the client
    (record,) = caplog.records
    assert ref.group(1) in record.getMessage() and record.exc_info is not None


def _field_values(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_STRING:
        scalar: st.SearchStrategy[Any] = st.one_of(
            st.text(max_size=30),
            st.dates().map(str),
            st.sampled_from(["current", "ensemble", "observed", "forcing", "1"]),
        )
    elif field.type == FieldDescriptor.TYPE_DOUBLE:
        scalar = st.floats(allow_nan=True, allow_infinity=True)
    elif field.type == FieldDescriptor.TYPE_BOOL:
        scalar = st.booleans()
    else:
        scalar = st.integers(-(2**31), 2**31 - 1)
    return st.lists(scalar, max_size=6) if field.is_repeated else scalar


@st.composite
def _requests(draw: st.DrawFn, capability: str) -> Any:
    request_type = SERVICE.methods_by_name[_call_of(capability)].input_type
    message = getattr(twin_pb2, request_type.name)()
    for field in request_type.fields:
        if draw(st.booleans()):
            value = draw(_field_values(field))
            if field.is_repeated:
                getattr(message, field.name).extend(value)
            else:
                setattr(message, field.name, value)
    return message


@pytest.mark.parametrize("capability", sorted(CAPABILITIES))
@given(data=st.data())
@settings(max_examples=150)
def test_any_request_is_valid_inputs_or_an_invalid_argument(
    capability: str, data: st.DataObject
) -> None:
    """Whatever a client puts in a request, it becomes core's typed inputs or a client
    error (INVALID_ARGUMENT / NOT_FOUND), never an unexpected exception (INTERNAL)."""
    request = data.draw(_requests(capability))
    try:
        _twin, inputs = convert.capability_inputs(request, CAPABILITIES[capability])
        CAPABILITIES[capability].validate(inputs)
    except errors.TwinmeshError as exc:
        assert status_code_for(exc) in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.NOT_FOUND,
        ), exc
