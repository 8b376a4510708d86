"""pygeoapi's configuration, generated from core: every twin, datacube and capability
appears without hand-written YAML.

What it makes (collection ids and plugin names are the contract the plugins rely on):

* ``<twin>-<dataset>`` for every datacube with ``t``/``y``/``x`` dimensions: EDR and
  Coverages (``twinmesh.ogc.coverages``);
* ``<twin>-warnings`` (the warning log), ``<twin>-regions``, ``<twin>-gauges`` and
  ``current-warnings`` (the latest warning of every region of every twin): Features
  (``twinmesh.ogc.features``);
* one process per core capability (``twinmesh.ogc.processes.CapabilityProcessor``),
  its jobs kept in core's job store (``twinmesh.ogc.manager.CoreJobManager``).

Every plugin definition carries the settings (``twinmesh.ogc.context``), so a plugin
reaches core without globals.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from twinmesh.core.capabilities import CAPABILITIES
from twinmesh.core.settings import Settings
from twinmesh.core.store import DatacubeStore
from twinmesh.core.twin import Twin
from twinmesh.ogc.context import settings_entry

__all__ = ["ogc_config", "datacube_collection_id", "CRS84", "CURRENT_WARNINGS"]

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CURRENT_WARNINGS = "current-warnings"
_COVERAGES = "twinmesh.ogc.coverages"
_FEATURES = "twinmesh.ogc.features"
_GRID_DIMS = {"t", "y", "x"}


def datacube_collection_id(twin_id: str, dataset_id: str) -> str:
    return f"{twin_id}-{dataset_id}"


def _metadata(settings: Settings) -> dict[str, Any]:
    return {
        "identification": {
            "title": "twinmesh OGC API",
            "description": "Digital twins of river basins: their capabilities as OGC API "
            "Processes, their datacubes as EDR and Coverages, their flood and drought "
            "warnings, regions and gauges as Features.",
            "keywords": ["digital twin", "hydrology", "early warning", "flood", "drought"],
            "keywords_type": "theme",
            "terms_of_service": "https://www.apache.org/licenses/LICENSE-2.0",
            "url": settings.ogc.base_url(),
        },
        "license": {
            "name": "Apache-2.0 (software); each collection states its data licence",
            "url": "https://www.apache.org/licenses/LICENSE-2.0",
        },
        "provider": {"name": "twinmesh", "url": settings.ogc.base_url()},
        "contact": {
            "name": "twinmesh operators",
            "position": "operator",
            "address": "-",
            "city": "-",
            "stateorprovince": "-",
            "postalcode": "-",
            "country": "-",
            "phone": "-",
            "fax": "-",
            "email": "-",
            "url": settings.ogc.base_url(),
            "hours": "-",
            "instructions": "-",
            "role": "pointOfContact",
        },
    }


def _extents(twin: Twin, start: Any = None, end: Any = None) -> dict[str, Any]:
    """Spatial and temporal extents; pygeoapi wants the temporal ones as datetimes (as
    its YAML loader makes them)."""
    begin = pd.Timestamp(start if start is not None else twin.time_extent[0])
    finish = pd.Timestamp(end if end is not None else twin.time_extent[1])
    return {
        "spatial": {"bbox": list(twin.bbox), "crs": CRS84},
        "temporal": {
            "begin": begin.tz_localize("UTC").to_pydatetime(),
            "end": finish.tz_localize("UTC").to_pydatetime(),
        },
    }


def _links(twin: Twin) -> list[dict[str, Any]]:
    return [
        {
            "type": "text/html",
            "rel": "license",
            "title": f"Licence: {twin.license}",
            "href": f"https://spdx.org/licenses/{twin.license}.html",
            "hreflang": "en-US",
        }
    ]


def _datacubes(store: DatacubeStore, twin: Twin, common: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for info in twin.datasets:
        if not store.has_dataset(twin.id, info.id):
            continue
        ds = store.open(twin.id, info.id)
        if not set(map(str, ds.dims)) >= _GRID_DIMS:
            continue
        provider = {
            "data": store.dataset_url(twin.id, info.id),
            "twin": twin.id,
            "dataset": info.id,
            "x_field": "x",
            "y_field": "y",
            "time_field": "t",
            **common,
        }
        t = ds["t"].values
        out[datacube_collection_id(twin.id, info.id)] = {
            "type": "collection",
            "title": f"{twin.title}: {info.title}",
            "description": f"{info.description} Provenance: {info.provenance}",
            "keywords": sorted({*info.keywords, *twin.keywords}),
            "links": _links(twin),
            "extents": _extents(twin, t.min(), t.max()),
            "providers": [
                {"type": "edr", "name": f"{_COVERAGES}.DatacubeEDRProvider", **provider},
                {
                    "type": "coverage",
                    # pygeoapi links a collection's coverage only when its default
                    # provider is a coverage (EDR links appear either way).
                    "default": True,
                    "name": f"{_COVERAGES}.DatacubeCoverageProvider",
                    "format": {"name": "netcdf", "mimetype": "application/x-netcdf"},
                    **provider,
                },
            ],
        }
    return out


def _features(settings: Settings, twin: Twin, common: dict[str, Any]) -> dict[str, Any]:
    data = settings.resolved_database_url

    def collection(suffix: str, title: str, description: str, provider: str, **extra: Any):
        return {
            f"{twin.id}-{suffix}": {
                "type": "collection",
                "title": f"{twin.title}: {title}",
                "description": description,
                "keywords": sorted({*twin.keywords, suffix}),
                "links": _links(twin),
                # No temporal extent: the log grows; the providers check `datetime`.
                "extents": {"spatial": {"bbox": list(twin.bbox), "crs": CRS84}},
                "providers": [
                    {
                        "type": "feature",
                        "name": f"{_FEATURES}.{provider}",
                        "data": data,
                        "twin": twin.id,
                        "id_field": "id",
                        "storage_crs": CRS84,
                        **extra,
                        **common,
                    }
                ],
            }
        }

    return {
        **collection(
            "warnings",
            "flood and drought warnings (the warning log)",
            "Every warning the twin issued, one feature per region and issue: its polygon, "
            "flood and drought levels, exceedance probabilities, issued and valid times, "
            "the model version and the forcing that made it.",
            "WarningLogProvider",
            time_field="issued",
        ),
        **collection(
            "regions",
            "regions",
            "The regions the twin issues warnings for (sub-basins and, where gauged, the "
            "basin above the outlet gauge).",
            "RegionsProvider",
        ),
        **collection(
            "gauges",
            "river gauges",
            "The gauges whose observed discharge the twin uses.",
            "GaugesProvider",
        ),
    }


def _current_warnings(settings: Settings, twins: list[Twin], common: dict[str, Any]):
    west = min(t.bbox[0] for t in twins)
    south = min(t.bbox[1] for t in twins)
    east = max(t.bbox[2] for t in twins)
    north = max(t.bbox[3] for t in twins)
    return {
        CURRENT_WARNINGS: {
            "type": "collection",
            "title": "Current flood and drought warnings of every twin",
            "description": "The latest warning of every region of every twin: the map a "
            "policy user needs, in one request.",
            "keywords": ["early warning", "flood", "drought", "current"],
            "links": [],
            "extents": {"spatial": {"bbox": [west, south, east, north], "crs": CRS84}},
            "providers": [
                {
                    "type": "feature",
                    "name": f"{_FEATURES}.CurrentWarningsProvider",
                    "data": settings.resolved_database_url,
                    "id_field": "id",
                    "storage_crs": CRS84,
                    "time_field": "issued",
                    **common,
                }
            ],
        }
    }


def _processes(common: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {
            "type": "process",
            "processor": {
                "name": "twinmesh.ogc.processes.CapabilityProcessor",
                "capability": name,
                **common,
            },
        }
        for name in CAPABILITIES
    }


def ogc_config(settings: Settings, store: DatacubeStore | None = None) -> dict[str, Any]:
    """The pygeoapi configuration of every twin in the store."""
    store = store or DatacubeStore(settings.resolved_store_url, settings.storage_options)
    common = settings_entry(settings)
    twins = [store.read_twin(t) for t in store.twin_ids()]
    resources: dict[str, Any] = {}
    for twin in twins:
        resources.update(_datacubes(store, twin, common))
        resources.update(_features(settings, twin, common))
    if twins:
        resources.update(_current_warnings(settings, twins, common))
    resources.update(_processes(common))
    return {
        "server": {
            "bind": {"host": settings.ogc.host, "port": settings.ogc.port},
            "url": settings.ogc.base_url(),
            "mimetype": "application/json; charset=UTF-8",
            "encoding": "utf-8",
            "gzip": False,
            "languages": ["en-US"],
            "cors": True,
            "pretty_print": False,
            "limits": {"default_items": 10, "max_items": 1000, "on_exceed": "throttle"},
            "map": {
                "url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
                "attribution": "&copy; OpenStreetMap contributors",
            },
            "manager": {
                "name": "twinmesh.ogc.manager.CoreJobManager",
                "connection": settings.resolved_database_url,
                "output_dir": str(settings.data_dir / "ogc"),
                **common,
            },
        },
        "logging": {"level": "ERROR"},
        "metadata": _metadata(settings),
        "resources": resources,
    }
