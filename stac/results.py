"""Job results as STAC: one ``<twin>-results`` collection per twin, an item per result.

A worker publishes each result as it finishes (:func:`result_publisher`): the item is
stored beside the result in the datacube store (so a catalogue rebuild keeps it),
added to the static catalogue, and loaded into the running STAC API's backend — the
embedded index gets the item added to a copy that replaces it (a running server
reopens it on its next request; the rest of the catalogue is not read again), pgstac
gets an upsert — so both serve the new result without a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from shapely.geometry import box, mapping

from twinmesh.core.capabilities.hydrology import is_perfect_forecast
from twinmesh.core.engine import Engine
from twinmesh.core.jobs import Job
from twinmesh.core.results import OutputKind, Result, jsonable
from twinmesh.core.settings import Settings
from twinmesh.core.store import DatacubeStore
from twinmesh.core.twin import Twin
from twinmesh.core.worker import Publisher, StoredResult
from twinmesh.stac.validate import validate_object

__all__ = [
    "results_collection_id",
    "result_label",
    "result_item",
    "results_collection",
    "stored_result_items",
    "catalog_lock",
    "result_publisher",
    "publish_catalog",
]

_STAC_VERSION = "1.1.0"
_XARRAY_EXT = "https://stac-extensions.github.io/xarray-assets/v1.0.0/schema.json"
_ITEM_FILE = "item.json"


def results_collection_id(twin_id: str) -> str:
    return f"{twin_id}-results"


def _iso(value: Any) -> str:
    return pd.Timestamp(value).tz_localize(None).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time_range(result: Result, job: Job) -> tuple[str, str]:
    if result.kind is OutputKind.COVERAGE and "t" in result.data.dims:
        t = result.data["t"].values
        if t.size:
            return _iso(np.min(t)), _iso(np.max(t))
    period = result.data.get("period") if result.kind is OutputKind.RECORD else None
    if isinstance(period, dict) and "start" in period and "end" in period:
        return _iso(period["start"]), _iso(period["end"])
    if result.kind is OutputKind.FEATURES and result.data.get("features"):
        props = result.data["features"][0]["properties"]
        if "valid_from" in props and "valid_to" in props:
            return _iso(props["valid_from"]), _iso(props["valid_to"])
    created = _iso(job.created)
    return created, created


#: What a result is called in its item's title, by capability.
_LABELS = {"verify": "verification report (hindcast skill)"}


def result_label(capability: str, forcing_mode: str | None) -> str:
    """How an item names its result: a run on the observed future forcing is the
    perfect-forecast reference, never a forecast or a warning."""
    if is_perfect_forecast(forcing_mode):
        return f"perfect-forecast reference run ({capability} inputs; not a forecast)"
    return _LABELS.get(capability, capability)


def result_item(
    twin: Twin,
    job: Job,
    result: Result,
    stored: StoredResult,
    extra_assets: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The STAC item of one job's result (valid against the core item schema); beside
    the stored result, ``extra_assets`` (other files the job kind wrote beside it)."""
    start, end = _time_range(result, job)
    asset: dict[str, Any] = {
        "href": stored.url,
        "type": stored.media_type,
        "title": f"{result_label(job.capability, stored.forcing_mode)} ({stored.format})",
        "roles": ["data"],
    }
    extensions = []
    if stored.format == "zarr":
        asset["xarray:open_kwargs"] = {
            "engine": "zarr",
            "consolidated": False,
            "zarr_format": 3,
            "chunks": {},
        }
        extensions.append(_XARRAY_EXT)
    cid = results_collection_id(twin.id)
    return {
        "type": "Feature",
        "stac_version": _STAC_VERSION,
        "stac_extensions": extensions,
        "id": job.id,
        "collection": cid,
        "geometry": jsonable(mapping(box(*twin.bbox))),
        "bbox": list(twin.bbox),
        "properties": {
            "title": f"{twin.title}: {result_label(job.capability, stored.forcing_mode)} "
            f"({job.id[:8]})",
            "datetime": start,
            "start_datetime": start,
            "end_datetime": end,
            "created": _iso(job.created),
            "twinmesh:twin": twin.id,
            "twinmesh:job": job.id,
            "twinmesh:capability": job.capability,
            "twinmesh:kind": stored.kind,
            "twinmesh:model_version": stored.model_version,
            "twinmesh:forcing_mode": stored.forcing_mode,
            "twinmesh:perfect_forecast": is_perfect_forecast(stored.forcing_mode),
            "twinmesh:inputs": jsonable(job.inputs),
            "twinmesh:generated": True,
        },
        "links": [],
        "assets": {"result": asset, **(extra_assets or {})},
    }


def results_collection(twin: Twin, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The collection document holding a twin's results (items linked by the caller)."""
    starts = sorted(i["properties"]["start_datetime"] for i in items) or [None]
    ends = sorted(i["properties"]["end_datetime"] for i in items) or [None]
    return {
        "type": "Collection",
        "stac_version": _STAC_VERSION,
        "stac_extensions": [],
        "id": results_collection_id(twin.id),
        "title": f"{twin.title}: computed results",
        "description": (
            "Results of the twin's capabilities computed as jobs (simulations, forecasts, "
            "warnings, subsets), one item per job, each naming the model version and "
            "forcing that made it. Generated data."
        ),
        "license": twin.license,
        "keywords": sorted({*twin.keywords, "results", "generated"}),
        "extent": {
            "spatial": {"bbox": [list(twin.bbox)]},
            "temporal": {"interval": [[starts[0], ends[-1]]]},
        },
        "twinmesh:twin": twin.id,
        "twinmesh:generated": True,
        "links": [],
    }


def stored_result_items(store: DatacubeStore, twin_id: str) -> list[dict[str, Any]]:
    """Every result item kept in the store for ``twin_id`` (oldest job first)."""
    pattern = f"{store.root}/{twin_id}/results/*/{_ITEM_FILE}"
    items = []
    for path in sorted(store.fs.glob(pattern)):
        with store.fs.open(path, "rb") as fh:
            items.append(json.loads(fh.read()))
    items.sort(key=lambda i: (i["properties"].get("created", ""), i["id"]))
    return items


@contextlib.contextmanager
def catalog_lock(catalog_dir: Path) -> Iterator[None]:
    """One writer of the static catalogue at a time, across processes."""
    catalog_dir = Path(catalog_dir)
    catalog_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(catalog_dir.parent / f".{catalog_dir.name}.lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_json(path: Path, doc: dict[str, Any]) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(doc, indent=2).encode()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data


#: A document of the static catalogue that changed: (path relative to the catalogue,
#: bytes before or None if the catalogue did not hold it, bytes after).
Change = tuple[str, bytes | None, bytes | None]


def _add_to_static_catalog(catalog_dir: Path, twin: Twin, item: dict[str, Any]) -> list[Change]:
    """Add ``item`` (and its collection, if new) to the static catalogue in place;
    returns the documents that changed."""
    cid = item["collection"]
    catalog_path = catalog_dir / "catalog.json"
    collection_path = catalog_dir / cid / "collection.json"
    item_path = catalog_dir / cid / item["id"] / f"{item['id']}.json"
    changes: list[Change] = []
    collection_before = collection_path.read_bytes() if collection_path.is_file() else None
    if collection_before is not None:
        collection = json.loads(collection_before)
    else:
        collection = results_collection(twin, [])
        collection["links"] = [
            {"rel": "root", "href": "../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
        ]
    href = f"./{item['id']}/{item['id']}.json"
    item_linked = any(link.get("href") == href for link in collection["links"])
    item_before = item_path.read_bytes() if item_linked and item_path.is_file() else None
    item_after = _write_json(
        item_path,
        {
            **item,
            "links": [
                {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
                {"rel": "collection", "href": "../collection.json", "type": "application/json"},
                {"rel": "parent", "href": "../collection.json", "type": "application/json"},
            ],
        },
    )
    changes.append((f"{cid}/{item['id']}/{item['id']}.json", item_before, item_after))
    if not item_linked:
        collection["links"].append({"rel": "item", "href": href, "type": "application/geo+json"})
    interval = collection["extent"]["temporal"]["interval"][0]
    start, end = item["properties"]["start_datetime"], item["properties"]["end_datetime"]
    interval[0] = min(filter(None, [interval[0], start]))
    interval[1] = max(filter(None, [interval[1], end]))
    changes.append(
        (f"{cid}/collection.json", collection_before, _write_json(collection_path, collection))
    )
    catalog_before = catalog_path.read_bytes()
    catalog = json.loads(catalog_before)
    child = f"./{cid}/collection.json"
    if not any(link.get("href") == child for link in catalog["links"]):
        catalog["links"].append({"rel": "child", "href": child, "type": "application/json"})
        changes.append(("catalog.json", catalog_before, _write_json(catalog_path, catalog)))
    return changes


def _refresh_backend(
    settings: Settings, collection_id: str, item_id: str, changes: list[Change]
) -> None:
    """Make the running STAC API serve the catalogue as it now is: the new item is
    upserted into pgstac or added to the embedded index; nothing else is reloaded."""
    from twinmesh.stac.api import stac_fastapi_defaults

    stac_fastapi_defaults()
    collection_path = settings.catalog_dir / collection_id / "collection.json"
    item_paths = [settings.catalog_dir / collection_id / item_id / f"{item_id}.json"]
    if settings.stac.backend == "pgstac":
        from twinmesh.stac.api.pgstac import upsert_from_catalog

        dsn = settings.stac.pgstac_dsn or ""
        upsert_from_catalog(dsn, settings.catalog_dir, collection_path, item_paths, changes)
        return
    from twinmesh.stac.api.app import embedded_index_path
    from twinmesh.stac.api.embedded import (
        add_to_embedded_index,
        index_fingerprint,
        load_catalog_embedded,
        updated_fingerprint,
    )

    db_path = embedded_index_path(settings)
    before = index_fingerprint(db_path)
    if before is None:  # no current index: build it whole
        load_catalog_embedded(db_path, settings.catalog_dir)
        return
    fingerprint = updated_fingerprint(before, changes)
    add_to_embedded_index(db_path, settings.catalog_dir, collection_path, item_paths, fingerprint)


def publish_catalog(settings: Settings, engine: Engine) -> int:
    """Rebuild the static catalogue (datacubes, results, models) and load it into the
    STAC API's backend, so a running server serves it at once; returns the number of
    collections. Used after the model registry changes and by ``twinmesh catalog build``."""
    from twinmesh.stac.api import stac_fastapi_defaults
    from twinmesh.stac.catalog import build_catalog

    stac_fastapi_defaults()
    for twin_id in engine.store.twin_ids():
        twin = engine.twin(twin_id)
        if twin.models:
            engine.model(twin)  # registers the twin document's models on first use
    catalog = build_catalog(engine.store, settings.catalog_dir, engine.models)
    with catalog_lock(settings.catalog_dir):
        if settings.stac.backend == "pgstac":
            if settings.stac.pgstac_dsn:
                from twinmesh.stac.api.pgstac import load_catalog_pgstac

                load_catalog_pgstac(settings.stac.pgstac_dsn, settings.catalog_dir)
        else:
            from twinmesh.stac.api.app import embedded_index_path
            from twinmesh.stac.api.embedded import load_catalog_embedded

            load_catalog_embedded(embedded_index_path(settings), settings.catalog_dir)
    return len(list(catalog.get_children()))


def result_publisher(settings: Settings) -> Publisher:
    """The worker's publisher of results to the STAC results collection."""

    def publish(engine: Engine, job: Job, result: Result, stored: StoredResult) -> dict[str, Any]:
        from twinmesh.core.capabilities import job_kinds

        twin = engine.twin(job.twin)
        kind = job_kinds().get(job.capability)
        extra = {}
        if kind is not None and kind.result_assets is not None:
            extra = kind.result_assets(engine, job, result, stored)
        item = result_item(twin, job, result, stored, extra)
        collection_link = {"rel": "collection", "href": "../collection.json"}
        validate_object({**item, "links": [collection_link]})
        store = engine.store
        path = f"{store.root}/{job.twin}/results/{job.id}/{_ITEM_FILE}"
        store.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with store.fs.open(path, "wb") as fh:
            fh.write(json.dumps(item, indent=2).encode())
        catalog_dir = settings.catalog_dir
        if not (catalog_dir / "catalog.json").is_file():
            from twinmesh.stac.catalog import build_catalog

            build_catalog(store, catalog_dir)  # includes the item just stored
        with catalog_lock(catalog_dir):
            changes = _add_to_static_catalog(catalog_dir, twin, item)
            _refresh_backend(settings, item["collection"], item["id"], changes)
        return {
            "stac_collection": item["collection"],
            "stac_item": item["id"],
            "published": datetime.now(UTC).isoformat(),
        }

    return publish
