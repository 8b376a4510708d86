"""Translation between ``twinmesh.v1`` messages and core: request messages to
capability inputs, results, twins and jobs to response messages.

Driven by field names, never by capability: a request field is the capability input of
the same name (an unset field, an empty string or list leaves the input to core's
default), and a result fills its response by kind — a coverage its ``CoverageResult``,
features one message per feature from the feature's properties, a record its ``Struct``.
So a new capability needs only its messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import xarray as xr
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from twinmesh.core.capabilities.declaration import Capability
from twinmesh.core.errors import InvalidParameter
from twinmesh.core.jobs import Job
from twinmesh.core.results import OutputKind, Result, jsonable
from twinmesh.core.twin import Twin
from twinmesh.v1 import twin_pb2

__all__ = [
    "TWIN_FIELD",
    "capability_inputs",
    "struct_to_dict",
    "to_struct",
    "timestamp",
    "result_info",
    "coverage_result",
    "coverage_size_bytes",
    "result_response",
    "response_field",
    "fill_message",
    "twin_message",
    "twin_summary",
    "job_message",
]

#: The request field naming the twin; every other field of a capability request is an input.
TWIN_FIELD = "twin_id"

_STRUCT = struct_pb2.Struct.DESCRIPTOR.full_name
_TIMESTAMP = timestamp_pb2.Timestamp.DESCRIPTOR.full_name
_COVERAGE = twin_pb2.CoverageResult.DESCRIPTOR.full_name
_INFO = twin_pb2.ResultInfo.DESCRIPTOR.full_name


# -- requests ------------------------------------------------------------------------------
def capability_inputs(request: Message, capability: Capability) -> tuple[str, dict[str, Any]]:
    """The twin and the inputs dict a capability request asks for.

    Only fields the client set become inputs (``ListFields``: a proto3 ``optional`` that
    is present, a non-empty string or list); the rest keep core's defaults. A set field
    that is not a declared input is refused, naming it (a silently ignored parameter is
    wrong data).
    """
    declared = capability.inputs.model_fields
    twin_id = ""
    inputs: dict[str, Any] = {}
    for field, value in request.ListFields():
        if field.name == TWIN_FIELD:
            twin_id = str(value)
        elif field.name in declared:
            inputs[field.name] = _python_value(field, value)
        else:
            raise InvalidParameter(
                f"{field.name} is not an input of {capability.name}; it takes {', '.join(declared)}"
            )
    if not twin_id:
        raise InvalidParameter(f"{TWIN_FIELD} is required: the id of a twin (see ListTwins)")
    return twin_id, inputs


def _python_value(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return dict(value)
    if field.is_repeated:
        if field.message_type is not None:
            return [_message_value(v) for v in value]
        return list(value)
    if field.message_type is not None:
        return _message_value(value)
    return value


def _message_value(message: Message) -> Any:
    name = message.DESCRIPTOR.full_name
    if name == _STRUCT:
        return struct_to_dict(message)  # type: ignore[arg-type]
    if name == _TIMESTAMP:
        return message.ToDatetime(tzinfo=UTC)  # type: ignore[attr-defined]
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A ``Struct`` as plain JSON values (whole numbers stay floats: core's models accept
    ``5.0`` for an integer input)."""
    return json_format.MessageToDict(struct)


def to_struct(value: Mapping[str, Any] | None) -> struct_pb2.Struct:
    """A JSON-able mapping as a ``Struct``; dates become ISO strings, NaN becomes null
    (JSON, and so grpcurl, has no NaN)."""
    struct = struct_pb2.Struct()
    if value:
        struct.update(jsonable(dict(value)))
    return struct


def timestamp(value: datetime | date) -> timestamp_pb2.Timestamp:
    """A ``Timestamp`` of an aware datetime (a naive one is UTC) or of a day's midnight UTC."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


# -- results ---------------------------------------------------------------------------------
def result_info(result: Result) -> twin_pb2.ResultInfo:
    return twin_pb2.ResultInfo(
        twin_id=result.twin_id,
        capability=result.capability,
        model_version=result.model_version or 0,
        forcing_mode=result.forcing_mode or "",
        inputs=to_struct(result.inputs),
    )


def coverage_size_bytes(data: xr.Dataset) -> int:
    """A lower bound of a coverage's encoded size: 8 bytes per value (packed doubles),
    known before the message is built."""
    values = sum(int(v.size) for v in data.data_vars.values())
    coords = sum(int(c.size) for c in data.coords.values() if c.ndim == 1)
    return 8 * (values + coords)


def coverage_result(result: Result) -> twin_pb2.CoverageResult:
    """A coverage as 1-D coordinates and flattened (row-major) variables; gaps stay NaN.

    Scalar coordinates (``spatial_ref``) are left out: every coverage is in WGS84."""
    data: xr.Dataset = result.data
    message = twin_pb2.CoverageResult(info=result_info(result))
    for name, coord in data.coords.items():
        if coord.ndim != 1:
            continue
        out = message.coordinates.add(name=str(name), dim=str(coord.dims[0]))
        values = np.asarray(coord.values)
        if np.issubdtype(values.dtype, np.datetime64):
            out.times.extend(_timestamps(values))
        elif np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_:
            out.values.extend(values.astype(np.float64).tolist())
        else:
            out.labels.extend(str(v) for v in values.tolist())
    for name, var in data.data_vars.items():
        values = np.asarray(var.values)
        units = str(var.attrs.get("units", ""))
        if np.issubdtype(values.dtype, np.datetime64):
            values = _epoch_seconds(values)
            units = "seconds since 1970-01-01T00:00:00Z"
        elif not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
            raise TypeError(f"variable {name!r} holds {values.dtype}, not numbers")
        message.variables.add(
            name=str(name),
            units=units,
            dims=[str(d) for d in var.dims],
            shape=[int(n) for n in var.shape],
            values=values.astype(np.float64).ravel(order="C").tolist(),
        )
    return message


def _epoch_seconds(values: np.ndarray) -> np.ndarray:
    ns = values.astype("datetime64[ns]")
    out = ns.astype(np.int64).astype(np.float64) / 1e9
    out[np.isnat(ns)] = np.nan
    return out


def _timestamps(values: np.ndarray) -> list[timestamp_pb2.Timestamp]:
    ns = values.astype("datetime64[ns]")
    if np.isnat(ns).any():
        raise ValueError("a time coordinate has missing values (NaT)")
    whole = ns.astype(np.int64)
    seconds, nanos = np.divmod(whole, 1_000_000_000)
    return [
        timestamp_pb2.Timestamp(seconds=s, nanos=n)
        for s, n in zip(seconds.tolist(), nanos.tolist(), strict=True)
    ]


def response_field(response: Descriptor, kind: OutputKind) -> FieldDescriptor:
    """The field of a capability response that holds a result of ``kind``.

    A coverage response has a ``CoverageResult`` field; a features response a repeated
    message field (one message per feature); a record response a ``Struct`` field. Any
    other shape is a contract error (the contract tests check every capability's)."""
    for field in response.fields:
        message = field.message_type
        if message is None:
            continue
        if kind is OutputKind.COVERAGE and message.full_name == _COVERAGE:
            return field
        if kind is OutputKind.FEATURES and field.is_repeated and not message.GetOptions().map_entry:
            return field
        if kind is OutputKind.RECORD and message.full_name == _STRUCT:
            return field
    raise TypeError(f"{response.full_name} has no field for a {kind} result")


def result_response[M: Message](result: Result, response_type: type[M]) -> M:
    """The response message of a capability call, filled from its result."""
    response = response_type()
    field = response_field(response.DESCRIPTOR, result.kind)
    if result.kind is OutputKind.COVERAGE:
        getattr(response, field.name).CopyFrom(coverage_result(result))
        return response
    info = response.DESCRIPTOR.fields_by_name.get("info")
    if info is not None and info.message_type.full_name == _INFO:
        response.info.CopyFrom(result_info(result))
    target = getattr(response, field.name)
    if result.kind is OutputKind.FEATURES:
        for feature in result.data.get("features", []):
            item = target.add()
            fill_message(item, feature.get("properties") or {})
            geometry = item.DESCRIPTOR.fields_by_name.get("geometry")
            if geometry is not None and feature.get("geometry") is not None:
                fill_message(item, {"geometry": feature["geometry"]})
    else:
        target.update(jsonable(result.data))
    return response


def fill_message(message: Message, values: Mapping[str, Any]) -> Message:
    """Set every field of ``message`` that ``values`` names (by field name) and that is
    not None; keys the message has no field for are left out."""
    fields = message.DESCRIPTOR.fields_by_name
    for key, value in values.items():
        field = fields.get(key)
        if field is None or value is None:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            getattr(message, key).update(
                {str(k): _scalar(value_field, v) for k, v in value.items() if v is not None}
            )
        elif field.is_repeated:
            target = getattr(message, key)
            if field.message_type is not None:
                for v in value:
                    _set_message(target.add(), v)
            else:
                target.extend(_scalar(field, v) for v in value)
        elif field.message_type is not None:
            _set_message(getattr(message, key), value)
        else:
            setattr(message, key, _scalar(field, value))
    return message


def _set_message(target: Message, value: Any) -> None:
    name = target.DESCRIPTOR.full_name
    if name == _STRUCT:
        target.update(jsonable(value))  # type: ignore[attr-defined]
    elif name == _TIMESTAMP:
        target.CopyFrom(timestamp(value if isinstance(value, date) else _parse_time(value)))
    else:
        fill_message(target, value)


def _parse_time(value: Any) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_STRING:
        return value.isoformat() if isinstance(value, date) else str(value)
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return float(value)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return bool(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return bytes(value)
    return int(value)


# -- twins and jobs ------------------------------------------------------------------------
def twin_summary(twin: Twin) -> twin_pb2.TwinSummary:
    return twin_pb2.TwinSummary(id=twin.id, title=twin.title, capabilities=twin.capabilities)


def twin_message(twin: Twin) -> twin_pb2.Twin:
    return twin_pb2.Twin(
        id=twin.id,
        title=twin.title,
        description=twin.description,
        bbox=list(twin.bbox),
        record_start=twin.time_extent[0].isoformat(),
        record_end=twin.time_extent[1].isoformat(),
        regions=[
            twin_pb2.Region(
                id=r.id,
                name=r.name,
                area_km2=r.area_km2,
                outlet_gauge=r.outlet_gauge or "",
                geometry=to_struct(r.geometry),
            )
            for r in twin.regions
        ],
        gauges=[
            twin_pb2.Gauge(id=g.id, name=g.name, lon_deg=g.lon, lat_deg=g.lat, area_km2=g.area_km2)
            for g in twin.gauges
        ],
        datasets=[d.id for d in twin.datasets],
        capabilities=twin.capabilities,
        license=twin.license,
        document=to_struct(twin.model_dump(mode="json")),
    )


def job_message(job: Job) -> twin_pb2.Job:
    message = twin_pb2.Job(
        id=job.id,
        twin_id=job.twin,
        capability=job.capability,
        status=job.status.value,
        progress=job.progress,
        message=job.message or "",
        created=timestamp(job.created),
        updated=timestamp(job.updated),
        inputs=to_struct(job.inputs),
    )
    if job.result is not None:
        message.result.CopyFrom(to_struct(job.result))
    if job.error is not None:
        message.error.CopyFrom(to_struct(job.error))
    return message
