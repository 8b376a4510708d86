"""openEO collections: core's t/y/x datacubes, described as STAC collections with the
datacube extension (``cube:dimensions`` with extents, steps and band names)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from twinmesh.core.engine import Engine
from twinmesh.core.twin import DatasetInfo, Twin
from twinmesh.openeo.errors import OpenEOError

__all__ = ["CubeRef", "cube_refs", "cube_ref", "open_cube", "collection_document", "GRID_DIMS"]

GRID_DIMS = ("t", "y", "x")
_DATACUBE_EXT = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"


@dataclass(frozen=True)
class CubeRef:
    """A collection: which twin's which dataset."""

    id: str
    twin: Twin
    dataset: DatasetInfo


def cube_refs(engine: Engine) -> list[CubeRef]:
    """Every datacube of every twin with dimensions t, y and x, in a stable order."""
    refs = []
    for twin_id in engine.store.twin_ids():
        twin = engine.twin(twin_id)
        for ds in twin.datasets:
            if not engine.store.has_dataset(twin.id, ds.id):
                continue
            cube = engine.store.open(twin.id, ds.id)
            if all(d in cube.dims for d in GRID_DIMS):
                refs.append(CubeRef(f"{twin.id}-{ds.id}", twin, ds))
    return refs


def open_cube(engine: Engine, collection_id: str) -> tuple[CubeRef, xr.Dataset]:
    """The collection ``collection_id`` and its cube opened (lazily), or
    CollectionNotFound naming those there are. Opens only that cube (a request pays
    for one open, not one per dataset of every twin)."""
    for twin_id in engine.store.twin_ids():
        if not collection_id.startswith(f"{twin_id}-"):
            continue
        twin = engine.twin(twin_id)
        for ds in twin.datasets:
            if f"{twin.id}-{ds.id}" != collection_id:
                continue
            if not engine.store.has_dataset(twin.id, ds.id):
                continue
            cube = _opened(engine, twin.id, ds.id)
            if all(d in cube.dims for d in GRID_DIMS):
                return CubeRef(collection_id, twin, ds), cube
    refs = cube_refs(engine)
    raise OpenEOError(
        404,
        "CollectionNotFound",
        f"no collection {collection_id!r}; the collections are: {', '.join(r.id for r in refs)}",
    )


#: Cubes opened lately, by their live version's path: a request reuses the lazy
#: Dataset (its metadata read once) until a new version goes live.
_OPENED: OrderedDict[tuple[int, str], xr.Dataset] = OrderedDict()
_OPENED_LOCK = threading.Lock()
_OPENED_MAX = 32


def _opened(engine: Engine, twin_id: str, dataset_id: str) -> xr.Dataset:
    key = (id(engine.store), engine.store.version_path(twin_id, dataset_id))
    with _OPENED_LOCK:
        cube = _OPENED.get(key)
        if cube is not None:
            _OPENED.move_to_end(key)
            return cube
    cube = engine.store.open(twin_id, dataset_id)
    with _OPENED_LOCK:
        _OPENED[key] = cube
        while len(_OPENED) > _OPENED_MAX:
            _OPENED.popitem(last=False)
    return cube


def cube_ref(engine: Engine, collection_id: str) -> CubeRef:
    """The collection ``collection_id``, or CollectionNotFound naming those there are."""
    return open_cube(engine, collection_id)[0]


def _iso(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _step(values: np.ndarray) -> float | None:
    if values.size < 2:
        return None
    diffs = np.diff(values.astype("float64"))
    return float(diffs[0]) if np.allclose(diffs, diffs[0]) else None


def bands_of(cube: xr.Dataset, declared: DatasetInfo | None = None) -> list[str]:
    """The band names of a cube: its data variables on t/y/x, in the order the dataset
    declares them (then by name: a Zarr group lists its arrays in no fixed order)."""
    names = [str(v) for v, da in cube.data_vars.items() if set(GRID_DIMS) <= set(da.dims)]
    order = list(declared.variables) if declared is not None else []
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def collection_document(
    engine: Engine, ref: CubeRef, base_url: str, *, full: bool
) -> dict[str, Any]:
    """The STAC collection of ``ref`` as ``/collections`` (``full=False``) and
    ``/collections/{id}`` (``full=True``, with ``cube:dimensions`` and summaries) list it."""
    cube = engine.store.open(ref.twin.id, ref.dataset.id)
    times = cube["t"].values
    x = cube["x"].values
    y = cube["y"].values
    bands = bands_of(cube, ref.dataset)
    west, south, east, north = ref.twin.bbox
    doc: dict[str, Any] = {
        "stac_version": "1.0.0",
        "stac_extensions": [_DATACUBE_EXT],
        "type": "Collection",
        "id": ref.id,
        "title": f"{ref.twin.title}: {ref.dataset.title}",
        "description": ref.dataset.description,
        "license": "other" if " " in ref.dataset.license else ref.dataset.license,
        "keywords": [*ref.twin.keywords, *ref.dataset.keywords],
        "providers": [p.model_dump(exclude_none=True) for p in ref.dataset.providers],
        "extent": {
            "spatial": {"bbox": [[float(west), float(south), float(east), float(north)]]},
            "temporal": {
                "interval": [[_iso(times.min()), _iso(times.max())] if times.size else [None, None]]
            },
        },
        "links": [
            {"rel": "self", "href": f"{base_url}/collections/{ref.id}", "type": "application/json"},
            {"rel": "root", "href": f"{base_url}/", "type": "application/json"},
            {"rel": "parent", "href": f"{base_url}/", "type": "application/json"},
            {"rel": "license", "href": f"{base_url}/collections/{ref.id}#license"},
        ],
    }
    if not full:
        return doc
    doc["cube:dimensions"] = {
        "x": {
            "type": "spatial",
            "axis": "x",
            "extent": [float(x.min()), float(x.max())],
            "step": _step(x),
            "reference_system": 4326,
        },
        "y": {
            "type": "spatial",
            "axis": "y",
            "extent": [float(y.min()), float(y.max())],
            "step": _step(y),
            "reference_system": 4326,
        },
        "t": {
            "type": "temporal",
            "extent": [_iso(times.min()), _iso(times.max())] if times.size else [None, None],
            "step": "P1D" if times.size > 1 and _step(times) == 86400e9 else None,
        },
        "bands": {"type": "bands", "values": bands},
    }
    doc["summaries"] = {
        "eo:bands": [
            {
                "name": b,
                "description": str(cube[b].attrs.get("long_name", b)),
                "unit": ref.dataset.variables.get(b, str(cube[b].attrs.get("units", ""))),
            }
            for b in bands
        ],
        "twinmesh:provenance": [ref.dataset.provenance],
        "twinmesh:generated": [ref.dataset.generated],
    }
    doc["license_text"] = ref.dataset.license
    return doc
