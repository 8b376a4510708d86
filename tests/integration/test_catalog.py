"""The static catalogue: offline validation, idempotent rebuilds, broken fields rejected."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import xarray as xr

from twinmesh.core.settings import Settings
from twinmesh.core.store import DatacubeStore
from twinmesh.stac.catalog import ZARR_MEDIA_TYPE, build_catalog
from twinmesh.stac.validate import StacValidationError, validate_catalog_dir, validate_object


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.json"))
    }


def _item(settings: Settings, dataset: str) -> dict:
    cid = f"fulda-{dataset}"
    return json.loads((settings.catalog_dir / cid / cid / f"{cid}.json").read_text())


def test_catalogue_validates_offline(demo_settings: Settings) -> None:
    # root + (5 collections + 5 items) for each of the two demo twins
    assert validate_catalog_dir(demo_settings.catalog_dir) == 21


def test_rebuild_is_idempotent(demo_settings: Settings, demo_store: DatacubeStore) -> None:
    before = _digest(demo_settings.catalog_dir)
    build_catalog(demo_store, demo_settings.catalog_dir)
    assert _digest(demo_settings.catalog_dir) == before


def test_items_carry_zarr_assets_that_open(demo_settings: Settings) -> None:
    item = _item(demo_settings, "forcing")
    asset = item["assets"]["zarr"]
    assert asset["type"] == ZARR_MEDIA_TYPE
    assert "data" in asset["roles"]
    ds = xr.open_dataset(asset["href"], **asset["xarray:open_kwargs"])
    assert set(ds.data_vars) == {"precipitation", "temperature"}
    assert item["properties"]["cube:dimensions"]["t"]["type"] == "temporal"
    assert item["properties"]["twinmesh:generated"] is True
    assert any(link["rel"] == "license" for link in item["links"])


def test_collection_states_licence_providers_and_provenance(demo_settings: Settings) -> None:
    col = json.loads((demo_settings.catalog_dir / "fulda-forcing" / "collection.json").read_text())
    assert col["license"] == "MIT"
    assert {p["name"] for p in col["providers"]} >= {"twinmesh"}
    assert "Derived" in col["twinmesh:provenance"]
    assert col["cube:dimensions"]["x"]["reference_system"] == 4326


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("cube:dimensions", "t", "type"), 42),
        (("cube:dimensions", "x", "extent"), "west to east"),
        (("cube:variables", "precipitation", "dimensions"), "t,y,x"),
        (("cube:dimensions", "x", "axis"), "q"),
    ],
)
def test_corrupted_datacube_field_is_rejected(demo_settings: Settings, path, value) -> None:
    item = copy.deepcopy(_item(demo_settings, "forcing"))
    validate_object(item)
    target = item["properties"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(StacValidationError) as info:
        validate_object(item)
    assert "datacube" in str(info.value)


def test_corrupted_file_on_disk_fails_the_directory_check(
    demo_settings: Settings, tmp_path
) -> None:
    import shutil

    copy_dir = tmp_path / "catalog"
    shutil.copytree(demo_settings.catalog_dir, copy_dir)
    path = copy_dir / "fulda-spi-3" / "collection.json"
    doc = json.loads(path.read_text())
    del doc["cube:dimensions"]["t"]["extent"]
    doc["license"] = 7
    path.write_text(json.dumps(doc))
    with pytest.raises(StacValidationError) as info:
        validate_catalog_dir(copy_dir)
    assert any("fulda-spi-3" in e for e in info.value.errors)
    assert len(info.value.errors) >= 2


def test_unknown_extension_schema_is_an_error_not_a_download(demo_settings: Settings) -> None:
    item = _item(demo_settings, "forcing")
    item["stac_extensions"].append("https://stac-extensions.github.io/eo/v9.9.9/schema.json")
    with pytest.raises(StacValidationError, match="not available offline"):
        validate_object(item)
