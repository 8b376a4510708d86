"""One result type for every capability, with its encoders.

A capability returns a *coverage* (an xarray Dataset with declared variables, units
and dimensions), *features* (a GeoJSON FeatureCollection with typed properties) or a
*record* (a JSON object). Adapters never serialise results themselves: they ask
:meth:`Result.encode` for one of :meth:`Result.formats` and send the bytes, or
:meth:`Result.write` a Zarr store.
"""

from __future__ import annotations

import io
import math
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import xarray as xr

__all__ = [
    "OutputKind",
    "Format",
    "FORMATS",
    "Result",
    "Encoded",
    "jsonable",
]


class OutputKind(StrEnum):
    COVERAGE = "coverage"
    FEATURES = "features"
    RECORD = "record"


@dataclass(frozen=True)
class Format:
    """An encoding of a result: its name, media type and file suffix."""

    name: str
    media_type: str
    suffix: str
    #: True when the encoding is a folder (Zarr), written with :meth:`Result.write`.
    directory: bool = False


FORMATS: dict[str, Format] = {
    f.name: f
    for f in [
        Format("netcdf", "application/x-netcdf", ".nc"),
        Format("zarr", "application/vnd+zarr", ".zarr", directory=True),
        Format("geojson", "application/geo+json", ".geojson"),
        Format("json", "application/json", ".json"),
    ]
}

#: Which encodings each kind of result has, the first being its default.
_KIND_FORMATS: dict[OutputKind, tuple[str, ...]] = {
    OutputKind.COVERAGE: ("zarr", "netcdf", "json"),
    OutputKind.FEATURES: ("geojson", "json"),
    OutputKind.RECORD: ("json",),
}


def jsonable(value: Any) -> Any:
    """Plain JSON values from numpy scalars/arrays, dates and nested containers;
    non-finite floats become None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


@dataclass(frozen=True)
class Encoded:
    """Bytes of an encoded result and how to label them."""

    format: Format
    content: bytes

    @property
    def media_type(self) -> str:
        return self.format.media_type


@dataclass(frozen=True)
class Result:
    """What a capability computed, and what made it.

    ``data`` is an ``xr.Dataset`` for coverages, a GeoJSON FeatureCollection dict for
    features and a JSON-able dict for records.
    """

    kind: OutputKind
    capability: str
    twin_id: str
    data: Any
    #: The model version that made it (``None`` when no model was involved, e.g. subset).
    model_version: int | None = None
    #: What drove the model: observed forcing, a perturbed ensemble, a scenario.
    forcing_mode: str | None = None
    #: The validated inputs, as JSON.
    inputs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = {
            OutputKind.COVERAGE: xr.Dataset,
            OutputKind.FEATURES: dict,
            OutputKind.RECORD: dict,
        }[self.kind]
        if not isinstance(self.data, expected):
            raise TypeError(
                f"a {self.kind} result holds {expected.__name__}, got {type(self.data)}"
            )

    # -- what it can become ------------------------------------------------------------
    def formats(self) -> list[Format]:
        return [FORMATS[name] for name in _KIND_FORMATS[self.kind]]

    def format(self, name: str | None = None) -> Format:
        """The named encoding (default: the kind's first), or ValueError naming those it has."""
        names = _KIND_FORMATS[self.kind]
        chosen = name or names[0]
        if chosen not in names:
            from twinmesh.core.errors import InvalidParameter

            raise InvalidParameter(
                f"a {self.kind} result cannot be encoded as {chosen!r}; choose from "
                f"{', '.join(names)}"
            )
        return FORMATS[chosen]

    @property
    def provenance(self) -> dict[str, Any]:
        """What every encoding states about how the result was made."""
        return {
            "twinmesh:twin": self.twin_id,
            "twinmesh:capability": self.capability,
            "twinmesh:model_version": self.model_version,
            "twinmesh:forcing_mode": self.forcing_mode,
        }

    def cf_dataset(self) -> xr.Dataset:
        ds: xr.Dataset = self.data.copy()
        attrs = {k: v for k, v in self.provenance.items() if v is not None}
        ds.attrs = {
            **{k: v for k, v in ds.attrs.items() if isinstance(v, str | int | float)},
            **{k.replace(":", "_"): v for k, v in attrs.items()},
        }
        return ds

    def to_json(self) -> dict[str, Any]:
        """A JSON document of the result (coverages as CF-JSON-like ``to_dict``)."""
        if self.kind is OutputKind.COVERAGE:
            doc = self.cf_dataset().to_dict(data="list", encoding=False)
            return dict(jsonable(doc))
        doc = dict(self.data)
        if self.kind is OutputKind.FEATURES:
            doc.setdefault("properties", {})
            doc["properties"] = {**doc["properties"], **self.provenance}
            return dict(jsonable(doc))
        return dict(jsonable({**doc, **self.provenance}))

    def encode(self, name: str | None = None) -> Encoded:
        """The result as bytes in one of its formats (Zarr: use :meth:`write`)."""
        fmt = self.format(name)
        if fmt.directory:
            raise ValueError(f"{fmt.name} is a folder: use Result.write(path, {fmt.name!r})")
        if fmt.name == "netcdf":
            buffer = io.BytesIO()
            self.cf_dataset().to_netcdf(buffer, engine="h5netcdf")
            return Encoded(fmt, buffer.getvalue())
        return Encoded(fmt, orjson.dumps(self.to_json(), option=orjson.OPT_SERIALIZE_NUMPY))

    def write(self, path: str | Path, name: str | None = None) -> Path:
        """Write the result to ``path`` (a file, or a folder for Zarr) atomically."""
        fmt = self.format(name)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
        if fmt.directory:
            self.cf_dataset().to_zarr(tmp, mode="w-", zarr_format=3, consolidated=False)
        else:
            tmp.write_bytes(self.encode(fmt.name).content)
        tmp.rename(target)
        return target
