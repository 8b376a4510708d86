"""Build the static STAC catalogue from the store: a Collection per datacube with the
datacube extension (xstac) and an Item whose Zarr asset opens with xarray.

The build is idempotent: the same store gives byte-identical files, and the new
catalogue replaces the old one only once it is complete and valid.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pystac
import xarray as xr
import xstac
from pystac.extensions.xarray_assets import XarrayAssetsExtension
from shapely.geometry import box, mapping

from twinmesh.core.models import ModelRegistry
from twinmesh.core.store import DatacubeStore
from twinmesh.core.twin import DatasetInfo, Twin
from twinmesh.stac.validate import validate_catalog_dir

__all__ = [
    "ZARR_MEDIA_TYPE",
    "CATALOG_ID",
    "collection_id",
    "build_catalog",
    "dataset_stac",
    "public_storage_options",
]

ZARR_MEDIA_TYPE = "application/vnd+zarr"
#: The holder name of the pins the catalogue keeps on the versions it publishes.
CATALOG_PIN = "stac-catalog"
CATALOG_ID = "twinmesh"


def collection_id(twin_id: str, dataset_id: str) -> str:
    return f"{twin_id}-{dataset_id}"


def _utc(value: np.datetime64) -> datetime:
    return pd.Timestamp(value).to_pydatetime().replace(tzinfo=UTC)


def _jsonable(value: Any) -> Any:
    """Attributes as plain JSON (numpy scalars and arrays become Python values)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


#: fsspec options safe to publish in a catalogue; credentials never are.
PUBLIC_STORAGE_OPTIONS = frozenset({"endpoint_url", "anon", "requester_pays", "region_name"})


def public_storage_options(options: dict[str, Any]) -> dict[str, Any]:
    """The store's fsspec options a reader needs (endpoint, anonymous access), without
    keys, secrets or tokens."""
    return {k: v for k, v in options.items() if k in PUBLIC_STORAGE_OPTIONS}


#: Time axes a datacube may have: ``t`` (valid time) or, for forecast forcing,
#: ``issued`` (the forecast reference time, with a ``lead`` dimension beside it).
TIME_DIMENSIONS = ("t", "issued")


def time_dimension(ds: xr.Dataset) -> str:
    """The cube's temporal dimension (see TIME_DIMENSIONS)."""
    for name in TIME_DIMENSIONS:
        if name in ds.dims:
            return name
    raise ValueError(f"a datacube needs one of the time dimensions {TIME_DIMENSIONS}")


def _other_dimensions(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    dims = {}
    for name in ds.dims:
        if name in ("x", "y", time_dimension(ds)):
            continue
        values = ds[name].values.tolist() if name in ds.coords else list(range(ds.sizes[name]))
        dims[str(name)] = {
            "type": "other",
            "description": str(ds[name].attrs.get("long_name", name))
            if name in ds.coords
            else str(name),
            "values": values,
        }
    return dims


def _asset(href: str, info: DatasetInfo) -> pystac.Asset:
    return pystac.Asset(
        href=href,
        title=f"{info.title} (Zarr v3)",
        description=info.description,
        media_type=ZARR_MEDIA_TYPE,
        roles=["data", "zarr"],
    )


def dataset_stac(
    store: DatacubeStore, twin: Twin, info: DatasetInfo
) -> tuple[pystac.Collection, pystac.Item]:
    """The Collection and Item describing one datacube of a twin."""
    ds = store.open(twin.id, info.id)
    href = store.dataset_url(twin.id, info.id)
    cid = collection_id(twin.id, info.id)
    tdim = time_dimension(ds)
    start, end = _utc(ds[tdim].values[0]), _utc(ds[tdim].values[-1])
    spatial = "x" in ds.dims and "y" in ds.dims
    bbox = list(twin.bbox)
    if spatial:
        dx = float(abs(ds["x"].values[1] - ds["x"].values[0])) / 2
        dy = float(abs(ds["y"].values[1] - ds["y"].values[0])) / 2
        bbox = [
            round(float(ds["x"].min()) - dx, 6),
            round(float(ds["y"].min()) - dy, 6),
            round(float(ds["x"].max()) + dx, 6),
            round(float(ds["y"].max()) + dy, 6),
        ]
    providers = [
        pystac.Provider(name=p.name, roles=cast(Any, p.roles), url=p.url, description=p.description)
        for p in info.providers
    ]
    open_kwargs = {"engine": "zarr", "consolidated": False, "zarr_format": 3, "chunks": {}}
    common = {
        "twinmesh:twin": twin.id,
        "twinmesh:dataset": info.id,
        "twinmesh:generated": info.generated,
        "twinmesh:provenance": info.provenance,
    }

    collection = pystac.Collection(
        id=cid,
        title=f"{twin.title}: {info.title}",
        description=f"{info.description}\n\nProvenance: {info.provenance}",
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[start, end]])),
        license=info.license,
        providers=providers,
        keywords=sorted(set(info.keywords) | set(twin.keywords)),
        extra_fields=dict(common),
    )
    item = pystac.Item(
        id=cid,
        geometry=mapping(box(*bbox)),
        bbox=bbox,
        datetime=start,
        start_datetime=start,
        end_datetime=end,
        properties={"title": info.title, "description": info.description, **common},
        collection=cid,
    )
    dims = _other_dimensions(ds)
    kwargs: dict[str, Any] = {
        "temporal_dimension": tdim,
        "x_dimension": "x" if spatial else False,
        "y_dimension": "y" if spatial else False,
        "validate": False,
        **dims,
    }
    if spatial:
        kwargs["reference_system"] = 4326
    stac_ds = ds.drop_vars("spatial_ref", errors="ignore")
    stac_ds.attrs = {}
    for name in stac_ds.variables:
        stac_ds[name].attrs = _jsonable(dict(stac_ds[name].attrs))
    collection = xstac.xarray_to_stac(stac_ds, collection, **kwargs)
    item = xstac.xarray_to_stac(stac_ds, item, **kwargs)
    # A cube spans its whole time axis: say so explicitly (STAC Browser shows it).
    item.properties["datetime"] = start.isoformat().replace("+00:00", "Z")
    # Zarr lists arrays in storage order, which varies: sort, so rebuilds are identical.
    for fields in (collection.extra_fields, item.properties):
        for key in ("cube:variables", "cube:dimensions"):
            fields[key] = dict(sorted(fields[key].items()))

    for obj in (collection, item):
        asset = _asset(href, info)
        obj.add_asset("zarr", asset)
        ext = XarrayAssetsExtension.ext(asset, add_if_missing=True)
        ext.open_kwargs = open_kwargs  # type: ignore[attr-defined]
        public = public_storage_options(store.storage_options)
        if public:
            ext.storage_options = _jsonable(public)  # type: ignore[attr-defined]
        obj.add_link(
            pystac.Link(
                rel="license",
                target=f"https://spdx.org/licenses/{info.license}.html",
                media_type="text/html",
                title=f"Licence: {info.license}",
            )
        )
    collection.add_item(item)
    return collection, item


def build_catalog(
    store: DatacubeStore, catalog_dir: Path, registry: ModelRegistry | None = None
) -> pystac.Catalog:
    """Write the catalogue of every twin in the store to ``catalog_dir`` and validate it:
    a collection per datacube, the twin's job results and, given the model registry,
    its model versions (STAC MLM extension).

    The catalogue is written beside the old one and swapped in only once it is valid.
    """
    catalog = pystac.Catalog(
        id=CATALOG_ID,
        title="twinmesh digital twins",
        description="Datacubes of the digital twins hosted by this twinmesh engine.",
    )
    from twinmesh.stac.results import catalog_lock

    catalog_dir = Path(catalog_dir)
    # Held for the whole build: a worker publishing a result meanwhile waits, so its
    # item is either in what this build read from the store or added after the swap.
    with catalog_lock(catalog_dir):
        _build_into(catalog, store, catalog_dir, registry)
    catalog.normalize_hrefs(str(catalog_dir))
    return catalog


def _build_into(
    catalog: pystac.Catalog,
    store: DatacubeStore,
    catalog_dir: Path,
    registry: ModelRegistry | None,
) -> None:
    from twinmesh.stac.models import MODEL_ASSET_KEY, model_collection, parameters_document
    from twinmesh.stac.results import results_collection, stored_result_items

    parameter_files: list[tuple[pystac.Item, dict[str, Any]]] = []

    for twin_id in store.twin_ids():
        twin = store.read_twin(twin_id)
        for info in twin.datasets:
            if store.has_dataset(twin.id, info.id):
                collection, _ = dataset_stac(store, twin, info)
                # The catalogue's asset points at this version: keep it from gc.
                store.pin(twin.id, info.id, store.dataset_url(twin.id, info.id), CATALOG_PIN)
                catalog.add_child(collection)
        results = stored_result_items(store, twin.id)
        if results:
            collection = pystac.Collection.from_dict(results_collection(twin, results))
            for doc in results:
                collection.add_item(pystac.Item.from_dict({**doc, "links": []}))
            catalog.add_child(collection)
        versions = registry.versions(twin.id) if registry is not None else []
        if versions:
            assert registry is not None
            models = model_collection(twin, versions, current=registry.current_version(twin.id))
            by_id = {item.id: item for item in models.get_items()}
            for version in versions:
                for item in by_id.values():
                    if item.properties.get("twinmesh:version") == version.version:
                        parameter_files.append((item, parameters_document(version)))
            catalog.add_child(models)

    catalog_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".catalog-", dir=catalog_dir.parent))
    try:
        catalog.normalize_hrefs(str(staging))
        catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
        for item, document in parameter_files:  # the model assets, beside their items
            href = item.assets[MODEL_ASSET_KEY].get_absolute_href()
            assert href is not None
            Path(href).write_text(json.dumps(document, indent=2))
        validate_catalog_dir(staging)
        old = None
        if catalog_dir.exists():
            old = catalog_dir.with_name(f".{catalog_dir.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            catalog_dir.rename(old)
        staging.rename(catalog_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
