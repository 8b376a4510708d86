"""Twin capabilities as OGC API - Processes: one pygeoapi processor per core capability.

Nothing here is declared twice: a process description (inputs with their ranges, units,
defaults and descriptions; the output and its media types; the example) is generated
from the capability's declaration in ``twinmesh.core.capabilities``, and the input
``twin`` lists the twins of the store that offer the capability. Execution validates
and computes through core's engine; core's typed errors become OGC exceptions with
their HTTP status (400 bad input, 404 unknown twin, 413 a result too large), never a
500 for a client's mistake.

Media types of a result over OGC: a coverage is netCDF (``application/x-netcdf``) or
JSON, features GeoJSON (or JSON), a record JSON. JSON is encoded by core (orjson) and
handed to pygeoapi as bytes under :data:`JSON_MEDIA_TYPE`: pygeoapi's ``to_json``
would otherwise re-encode it with the standard library and turn every ``<``/``>`` in
the data into ``&lt;``/``&gt;`` (``pygeoapi/util.py`` ``to_json``).
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from pygeoapi.process.base import BaseProcessor, ProcessorExecuteError

from twinmesh.core.capabilities import CAPABILITIES, Capability
from twinmesh.core.errors import InvalidInput, TwinmeshError
from twinmesh.core.results import FORMATS, Format, OutputKind, Result
from twinmesh.core.twin import Twin
from twinmesh.ogc.context import engine_for

__all__ = [
    "CapabilityProcessor",
    "CapabilityExecuteError",
    "ExecutionRequest",
    "JSON_MEDIA_TYPE",
    "OUTPUT_ID",
    "output_formats",
    "process_description",
    "parse_execution",
    "core_errors",
]

logger = logging.getLogger(__name__)

#: The one output every capability process has.
OUTPUT_ID = "result"

#: JSON as twinmesh sends it (already encoded): the parameter keeps pygeoapi's
#: ``to_json`` off the bytes (see the module docstring).
JSON_MEDIA_TYPE = "application/json; charset=utf-8"

#: The encodings of each kind of result over OGC, the default first (Zarr is a folder:
#: an asynchronous job's Zarr result is served as netCDF, see ``manager``).
_OGC_FORMATS: dict[OutputKind, tuple[str, ...]] = {
    OutputKind.COVERAGE: ("netcdf", "json"),
    OutputKind.FEATURES: ("geojson", "json"),
    OutputKind.RECORD: ("json",),
}


def output_formats(capability: Capability) -> list[Format]:
    """The formats a capability's result is served in over OGC, the default first."""
    return [FORMATS[name] for name in _OGC_FORMATS[capability.output.kind]]


def _twinmesh_version() -> str:
    try:
        return version("twinmesh")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0.0.0"


# -- errors ------------------------------------------------------------------------------
class CapabilityExecuteError(ProcessorExecuteError):
    """A core error as pygeoapi answers it: its HTTP status and OGC exception code.

    pygeoapi's ``GenericError.message`` is the *user* message (``user_msg``), not the
    exception's argument (``pygeoapi/error.py``): the text is passed as ``user_msg``.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, user_msg=message)
        self.http_status_code = HTTPStatus(status)
        self.ogc_exception_code = code


def _ogc_code(exc: TwinmeshError) -> str:
    if isinstance(exc, InvalidInput) and exc.status == HTTPStatus.BAD_REQUEST:
        return "InvalidParameterValue"
    return exc.code


def bad_request(message: str, code: str = "InvalidParameterValue") -> CapabilityExecuteError:
    return CapabilityExecuteError(HTTPStatus.BAD_REQUEST, code, message)


@contextmanager
def core_errors() -> Iterator[None]:
    """Core's typed errors as OGC exceptions; anything else is an internal error whose
    details go to the log under a reference, never to the client."""
    try:
        yield
    except ProcessorExecuteError:
        raise
    except TwinmeshError as exc:
        raise CapabilityExecuteError(exc.status, _ogc_code(exc), exc.message) from None
    except Exception as exc:
        ref = secrets.token_hex(4)
        logger.exception("capability process failed (ref %s)", ref)
        raise CapabilityExecuteError(
            HTTPStatus.INTERNAL_SERVER_ERROR, "NoApplicableCode", f"internal error (ref {ref})"
        ) from exc


# -- the description -----------------------------------------------------------------------
def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0's form of an optional value (what OGC process descriptions use):
    ``anyOf: [X, {type: null}]`` becomes X with ``nullable: true``."""
    alternatives = schema.get("anyOf")
    if not isinstance(alternatives, list):
        return schema
    others = [a for a in alternatives if a.get("type") != "null"]
    if len(others) == len(alternatives):
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    if len(others) == 1:
        return {**others[0], **rest, "nullable": True}
    return {**rest, "anyOf": others, "nullable": True}


def _input_schema(schema: dict[str, Any]) -> dict[str, Any]:
    schema = {k: v for k, v in schema.items() if k not in ("title", "description", "x-required")}
    examples = schema.pop("examples", None)
    schema = _nullable(schema)
    if examples:
        schema["example"] = examples[0]
    return schema


def _inline_refs(schema: Any, defs: Mapping[str, Any]) -> Any:
    """``$ref: #/$defs/X`` replaced by X: a process description is one document, whose
    root is not the schema's, so references into ``$defs`` would point nowhere."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline_refs(defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {}), defs)
        return {k: _inline_refs(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(v, defs) for v in schema]
    return schema


def _output_schema(capability: Capability) -> dict[str, Any]:
    declared = capability.output_schema()
    declared = _inline_refs(declared, declared.get("$defs", {}))
    declared.pop("contentMediaType", None)
    top = {k: v for k, v in declared.items() if k == "description" or k.startswith("x-")}
    body = {k: v for k, v in declared.items() if k not in top}
    alternatives = []
    for fmt in output_formats(capability):
        if fmt.name == "netcdf":
            alternatives.append(
                {"type": "string", "contentEncoding": "binary", "contentMediaType": fmt.media_type}
            )
        else:
            alternatives.append({**body, "contentMediaType": fmt.media_type})
    if len(alternatives) == 1:
        return {**top, **alternatives[0]}
    return {**top, "oneOf": alternatives}


def _fits(twin: Twin, name: str, value: Any) -> bool:
    """Whether an example value makes sense for ``twin`` (its regions, box, period)."""
    if name == "regions" and isinstance(value, list):
        return {str(v) for v in value} <= {r.id for r in twin.regions}
    if name == "bbox" and isinstance(value, list) and len(value) == 4:
        west, south, east, north = twin.bbox
        return value[0] <= east and value[2] >= west and value[1] <= north and value[3] >= south
    if isinstance(value, str) and len(value) == 10:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return True
        return twin.time_extent[0] <= day <= twin.time_extent[1]
    return True


def _example(capability: Capability, twins: Sequence[Twin]) -> dict[str, Any]:
    """An execute request from the declaration's field examples, for the twin that fits
    them best; an optional example value that twin cannot serve is left out (an example
    must work)."""
    params = capability.parameter_schemas()
    values = {n: s["examples"][0] for n, s in params.items() if s.get("examples")}
    inputs: dict[str, Any] = {}
    if twins:
        twin = max(twins, key=lambda t: sum(_fits(t, n, v) for n, v in values.items()))
        inputs["twin"] = twin.id
        values = {n: v for n, v in values.items() if params[n]["x-required"] or _fits(twin, n, v)}
    inputs.update(values)
    return {"inputs": inputs}


def process_description(capability: Capability, twins: Sequence[Twin]) -> dict[str, Any]:
    """The OGC API process description (pygeoapi's ``PROCESS_METADATA`` shape) of a
    capability, ``twins`` being those that offer it."""
    twin_schema: dict[str, Any] = {"type": "string"}
    if twins:
        twin_schema["enum"] = [t.id for t in twins]
        twin_schema["example"] = twins[0].id
    inputs: dict[str, Any] = {
        "twin": {
            "title": "Twin",
            "description": "Id of the digital twin to run the capability on "
            f"(those offering {capability.name}).",
            "schema": twin_schema,
            "minOccurs": 1,
            "maxOccurs": 1,
            "keywords": ["twin"],
        }
    }
    for name, schema in capability.parameter_schemas().items():
        inputs[name] = {
            "title": schema.get("title", name),
            "description": schema.get("description", name),
            "schema": _input_schema(schema),
            "minOccurs": 1 if schema["x-required"] else 0,
            "maxOccurs": 1,
        }
    formats = output_formats(capability)
    return {
        "version": _twinmesh_version(),
        "id": capability.name,
        "title": capability.title,
        "description": capability.description,
        "jobControlOptions": ["sync-execute", "async-execute"],
        "outputTransmission": ["value"],
        "keywords": ["digital twins", *capability.keywords],
        "links": [],
        "inputs": inputs,
        "outputs": {
            OUTPUT_ID: {
                "title": capability.title,
                "description": f"The {capability.output.kind.value} result, as "
                + " or ".join(f.media_type for f in formats)
                + f" ({formats[0].media_type} unless the request's outputs ask for "
                "another).",
                "schema": _output_schema(capability),
            }
        },
        "example": _example(capability, twins),
    }


# -- execution -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ExecutionRequest:
    """An execute request, checked: the twin, the capability's inputs, the format of
    the output and whether it is sent raw or in a JSON document."""

    twin: str
    inputs: dict[str, Any]
    format: Format
    document: bool


def _requested_format(capability: Capability, outputs: Any) -> Format:
    formats = output_formats(capability)
    if outputs is None or outputs == {}:
        return formats[0]
    if not isinstance(outputs, Mapping):
        raise bad_request(
            f"outputs is an object keyed by output id ({OUTPUT_ID!r}), got {type(outputs).__name__}"
        )
    unknown = [str(k) for k in outputs if k != OUTPUT_ID]
    if unknown:
        raise bad_request(
            f"unknown output {', '.join(map(repr, unknown))}: {capability.name} has one "
            f"output, {OUTPUT_ID!r}"
        )
    wanted = outputs[OUTPUT_ID]
    if wanted is None:
        return formats[0]
    if not isinstance(wanted, Mapping):
        raise bad_request(f"outputs.{OUTPUT_ID} is an object, got {type(wanted).__name__}")
    extra = sorted(set(wanted) - {"format", "transmissionMode"})
    if extra:
        raise bad_request(
            f"outputs.{OUTPUT_ID} does not take {', '.join(map(repr, extra))}: "
            "give format.mediaType and transmissionMode"
        )
    mode = wanted.get("transmissionMode", "value")
    if mode != "value":
        raise bad_request(f"transmissionMode {mode!r} is not supported: results are sent by value")
    fmt = wanted.get("format")
    if fmt is None:
        return formats[0]
    if not isinstance(fmt, Mapping) or not isinstance(fmt.get("mediaType"), str):
        raise bad_request(f"outputs.{OUTPUT_ID}.format is an object with a mediaType string")
    unsupported = sorted(set(fmt) - {"mediaType"})
    if unsupported:
        raise bad_request(
            f"outputs.{OUTPUT_ID}.format does not take {', '.join(map(repr, unsupported))}"
        )
    media = fmt["mediaType"].split(";")[0].strip().lower()
    for candidate in formats:
        if candidate.media_type == media:
            return candidate
    raise bad_request(
        f"{capability.name} cannot send its result as {fmt['mediaType']!r}; choose from "
        + ", ".join(f.media_type for f in formats)
    )


def parse_execution(
    capability: Capability, data: Any, outputs: Any = None, response: Any = "raw"
) -> ExecutionRequest:
    """Check the parts of an execute request that are OGC's (not the capability's
    inputs, which core validates): a JSON object of inputs with the twin, the requested
    output, the response form."""
    if not isinstance(data, Mapping):
        raise bad_request(
            f"inputs is a JSON object of named inputs (twin and {capability.name}'s "
            f"parameters), got {type(data).__name__}"
        )
    if response not in ("raw", "document"):
        raise bad_request(f"response is 'raw' or 'document', got {response!r}")
    inputs = dict(data)
    twin = inputs.pop("twin", None)
    if twin is None:
        raise bad_request(
            f"the input twin is required: the id of a twin offering {capability.name}",
            "MissingParameterValue",
        )
    if not isinstance(twin, str):
        raise bad_request(f"the input twin is a twin id (a string), got {type(twin).__name__}")
    return ExecutionRequest(
        twin=twin,
        inputs=inputs,
        format=_requested_format(capability, outputs),
        document=response == "document",
    )


def _encode(result: Result, request: ExecutionRequest) -> tuple[str, bytes]:
    """The result in the requested format: raw bytes and their media type, or a JSON
    document ``{"result": value}`` (binary values base64-encoded, as OGC qualifies
    them)."""
    encoded = result.encode(request.format.name)
    is_json = request.format.name == "json"
    media = JSON_MEDIA_TYPE if is_json else encoded.media_type
    if not request.document:
        return media, encoded.content
    return results_document(encoded.media_type, encoded.content)


def results_document(media_type: str, content: bytes) -> tuple[str, bytes]:
    """A results document ``{"result": value}``: JSON values inline, binary ones
    base64-encoded with their media type, as OGC qualifies them."""
    if media_type.split(";")[0].strip() in ("application/json", "application/geo+json"):
        value = content
    else:
        value = orjson.dumps(
            {
                "value": base64.b64encode(content).decode("ascii"),
                "encoding": "base64",
                "mediaType": media_type,
            }
        )
    return JSON_MEDIA_TYPE, b'{"' + OUTPUT_ID.encode() + b'":' + value + b"}"


class CapabilityProcessor(BaseProcessor):
    """One core capability as a pygeoapi process.

    ``processor_def`` is what ``twinmesh.ogc.config`` generates: ``name``,
    ``capability`` (a key of ``CAPABILITIES``) and the settings. The description is
    generated on construction (pygeoapi builds a processor per request, so it follows
    the store's twins).
    """

    def __init__(self, processor_def: dict[str, Any]) -> None:
        name = processor_def.get("capability")
        if name not in CAPABILITIES:
            raise ValueError(
                f"processor definition names capability {name!r}; twinmesh has "
                + ", ".join(CAPABILITIES)
            )
        self.capability = CAPABILITIES[str(name)]
        self.engine = engine_for(processor_def)
        super().__init__(processor_def, process_description(self.capability, self.twins()))
        self.supports_outputs = True

    def twins(self) -> list[Twin]:
        """The store's twins that offer this capability."""
        store = self.engine.store
        twins = [store.read_twin(t) for t in store.twin_ids()]
        return [t for t in twins if self.capability.name in t.capabilities]

    def parse(self, data: Any, outputs: Any = None, response: Any = "raw") -> ExecutionRequest:
        return parse_execution(self.capability, data, outputs, response)

    def run(self, request: ExecutionRequest) -> tuple[str, bytes]:
        """Validate and compute now (core's ``engine.run``); the encoded result."""
        with core_errors():
            result = self.engine.run(request.twin, self.capability.name, request.inputs)
            return _encode(result, request)

    def submit(self, request: ExecutionRequest) -> str:
        """Validate now and store as a job for a ``twinmesh worker``; the job id."""
        with core_errors():
            return self.engine.submit(request.twin, self.capability.name, request.inputs).id

    def execute(self, data: dict[str, Any], outputs: dict[str, Any] | None = None) -> Any:
        """pygeoapi's entry point: compute synchronously, return (media type, bytes)."""
        with core_errors():
            request = self.parse(data, outputs)
        return self.run(request)

    def __repr__(self) -> str:
        return f"<CapabilityProcessor> {self.capability.name}"
