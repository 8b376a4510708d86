"""How a capability is declared: typed inputs, an output kind, a size estimate.

A capability is declared once, here in core. Everything a protocol needs is
generated from the declaration — the JSON Schemas of an OGC API process
description, an openEO process description, the CLI's options — and so are the
checks: a value outside its declared range is an :class:`InvalidParameter` naming
the range, before any data is read.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import annotated_types
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from twinmesh.core.errors import InvalidParameter
from twinmesh.core.results import OutputKind, Result

if TYPE_CHECKING:
    from twinmesh.core.engine import Engine, Progress
    from twinmesh.core.twin import Twin

__all__ = [
    "CapabilityInputs",
    "Coverage",
    "Features",
    "Record",
    "Output",
    "Capability",
    "units",
    "declared_range",
    "field_type",
]


class CapabilityInputs(BaseModel):
    """Base of every capability's inputs: immutable, and an unknown name is an error
    (a silently ignored parameter is wrong data)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def units(value: str) -> dict[str, Any]:
    """``json_schema_extra`` stating a parameter's units (UDUNITS / CF)."""
    return {"x-units": value}


@dataclass(frozen=True)
class Coverage:
    """A gridded or tabular dataset: its variables (name → units) and dimensions."""

    variables: dict[str, str]
    dims: tuple[str, ...]
    kind: OutputKind = OutputKind.COVERAGE

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "description": "A CF datacube (Zarr or netCDF) with dimensions "
            f"{', '.join(self.dims)} and variables "
            + ", ".join(f"{v} [{u}]" for v, u in self.variables.items()),
            "x-twinmesh-kind": self.kind.value,
            "x-twinmesh-dimensions": list(self.dims),
            "x-twinmesh-variables": dict(self.variables),
            "contentMediaType": "application/vnd+zarr",
        }


@dataclass(frozen=True)
class Features:
    """A GeoJSON FeatureCollection whose features carry ``properties`` of this model."""

    properties: type[BaseModel]
    kind: OutputKind = OutputKind.FEATURES

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "description": "GeoJSON FeatureCollection",
            "x-twinmesh-kind": self.kind.value,
            "required": ["type", "features"],
            "properties": {
                "type": {"const": "FeatureCollection"},
                "features": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type", "geometry", "properties"],
                        "properties": {
                            "type": {"const": "Feature"},
                            "geometry": {"type": "object"},
                            "properties": self.properties.model_json_schema(),
                        },
                    },
                },
            },
            "contentMediaType": "application/geo+json",
        }


@dataclass(frozen=True)
class Record:
    """A JSON object of this model."""

    model: type[BaseModel]
    kind: OutputKind = OutputKind.RECORD

    def schema(self) -> dict[str, Any]:
        return {
            **self.model.model_json_schema(),
            "x-twinmesh-kind": self.kind.value,
            "contentMediaType": "application/json",
        }


Output = Coverage | Features | Record


def declared_range(info: FieldInfo) -> tuple[float | None, float | None]:
    """The inclusive (low, high) a field declares (``ge``/``le``; ``gt``/``lt`` too)."""
    low = high = None
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge | annotated_types.Gt):
            low = meta.ge if isinstance(meta, annotated_types.Ge) else meta.gt
        if isinstance(meta, annotated_types.Le | annotated_types.Lt):
            high = meta.le if isinstance(meta, annotated_types.Le) else meta.lt
    return low, high  # type: ignore[return-value]


def field_type(info: FieldInfo) -> Any:
    """The field's type without ``None`` (``int | None`` → ``int``)."""
    annotation = info.annotation
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _describe_range(name: str, info: FieldInfo) -> str | None:
    low, high = declared_range(info)
    if low is None and high is None:
        return None
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    unit = f" {extra['x-units']}" if extra.get("x-units") not in (None, "1") else ""
    if low is not None and high is not None:
        return f"{name} must be between {low} and {high}{unit}"
    if low is not None:
        return f"{name} must be at least {low}{unit}"
    return f"{name} must be at most {high}{unit}"


def _input_error(capability: str, model: type[BaseModel], exc: ValidationError) -> InvalidParameter:
    """One message for every problem, each naming the parameter and what is allowed."""
    fields = model.model_fields
    problems = []
    for error in exc.errors(include_url=False):
        loc = [str(p) for p in error["loc"]]
        name = loc[0] if loc else "inputs"
        got = error.get("input")
        kind = error["type"]
        if kind == "extra_forbidden":
            problems.append(f"unknown parameter {name!r}: {capability} takes {', '.join(fields)}")
            continue
        if kind == "missing":
            problems.append(f"{name} is required ({fields[name].description})")
            continue
        info = fields.get(name)
        ranged = _describe_range(name, info) if info is not None else None
        if ranged and kind in {
            "greater_than_equal",
            "less_than_equal",
            "greater_than",
            "less_than",
        }:
            problems.append(f"{ranged}, got {got!r}")
            continue
        where = ".".join(loc) or "inputs"
        problems.append(f"{where}: {error['msg']}, got {got!r}"[:300])
    return InvalidParameter("; ".join(problems))


@dataclass(frozen=True)
class Capability:
    """What a twin can do: typed inputs, an output kind, and the function computing it.

    ``compute(engine, twin, inputs, progress)`` returns the result's data and the model
    version it used; ``estimate_bytes(engine, twin, inputs)`` the size of the result,
    from metadata only, so a request that is too large is refused before any read.
    """

    name: str
    title: str
    description: str
    inputs: type[CapabilityInputs]
    output: Output
    compute: Callable[[Engine, Twin, Any, Progress], Result]
    estimate_bytes: Callable[[Engine, Twin, Any], int]
    keywords: tuple[str, ...] = field(default_factory=tuple)
    #: What the engine does with every result it computes (e.g. record issued warnings
    #: in the event log): ``record(engine, result, job_id)``.
    record: Callable[[Engine, Result, str | None], None] | None = None
    #: Files a job of this kind writes beside its stored result (e.g. the encoding a
    #: client asked for), as STAC assets by key: ``result_assets(engine, job, result,
    #: stored)``; the result publisher lists them in the result's item.
    result_assets: Callable[[Engine, Any, Result, Any], dict[str, dict[str, Any]]] | None = None
    #: A report worth keeping (e.g. a verification): the CLI stores and publishes it
    #: as a job result even when it runs it in place.
    report: bool = False

    # -- the checks ----------------------------------------------------------------------
    def validate(self, raw: Mapping[str, Any] | CapabilityInputs | None) -> CapabilityInputs:
        """Typed inputs from a mapping (JSON, CLI options), or InvalidParameter."""
        if isinstance(raw, self.inputs):
            return raw
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise InvalidParameter(
                f"the inputs of {self.name} are an object of named parameters, "
                f"got {type(raw).__name__}"
            )
        try:
            return self.inputs.model_validate(dict(raw))
        except ValidationError as exc:
            raise _input_error(self.name, self.inputs, exc) from None

    # -- what adapters generate from it ----------------------------------------------------
    def input_schema(self) -> dict[str, Any]:
        """JSON Schema of the inputs (types, ranges, units, defaults, examples)."""
        return self.inputs.model_json_schema()

    def output_schema(self) -> dict[str, Any]:
        return self.output.schema()

    def parameter_schemas(self) -> dict[str, dict[str, Any]]:
        """One JSON Schema per input, with ``$defs`` inlined (what OGC and openEO list)."""
        schema = self.input_schema()
        defs = schema.get("$defs", {})
        required = set(schema.get("required", []))
        out = {}
        for name, prop in schema.get("properties", {}).items():
            prop = _inline(prop, defs)
            # An optional number (``int | None``) keeps its range at the top level too,
            # where clients look for it (numeric keywords do not constrain null).
            for alternative in prop.get("anyOf", []):
                for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                    if key in alternative:
                        prop.setdefault(key, alternative[key])
            prop["x-required"] = name in required
            out[name] = prop
        return out

    def openeo_process(self) -> dict[str, Any]:
        """An openEO process description (API 1.2 ``/processes`` entry)."""
        params = [
            {
                "name": "twin",
                "description": "Id of the digital twin.",
                "schema": {"type": "string", "subtype": "twin-id"},
            }
        ]
        for name, schema in self.parameter_schemas().items():
            required = schema.pop("x-required")
            description = schema.pop("description", name)
            default = schema.pop("default", None)
            entry: dict[str, Any] = {
                "name": name,
                "description": description,
                "schema": _openeo_schema(schema),
            }
            if not required:
                entry["optional"] = True
                entry["default"] = default
            params.append(entry)
        returns_schema = (
            {"type": "object", "subtype": "datacube"}
            if self.output.kind is OutputKind.COVERAGE
            else {"type": "object", "subtype": "geojson"}
            if self.output.kind is OutputKind.FEATURES
            else {"type": "object"}
        )
        return {
            "id": self.name,
            "summary": self.title,
            "description": self.description,
            "categories": ["digital twins", *self.keywords],
            "parameters": params,
            "returns": {
                "description": self.output.schema().get("description", self.title),
                "schema": returns_schema,
            },
        }

    def cli_fields(self) -> dict[str, FieldInfo]:
        return dict(self.inputs.model_fields)


def _openeo_schema(schema: dict[str, Any]) -> dict[str, Any] | list[dict[str, Any]]:
    """openEO's form of a parameter schema: alternatives as a list of schemas (not
    ``anyOf``), dates with ``subtype: date``, no titles."""
    schema = {k: v for k, v in schema.items() if k not in ("title", "examples")}
    if "anyOf" in schema:
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        return [
            {**rest, **alternative}
            for part in schema["anyOf"]
            for alternative in _as_list(_openeo_schema(part))
        ]
    if schema.get("format") == "date":
        schema["subtype"] = "date"
    return schema


def _as_list(schema: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return schema if isinstance(schema, list) else [schema]


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    if isinstance(schema, dict):
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            return _inline(defs.get(name, {}), defs)
        return {k: _inline(v, defs) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema
