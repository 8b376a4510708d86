"""STAC publication of a twin's model registry: one Collection per twin, one Item per
model version, described with the Machine Learning Model (MLM) extension.

Why: a client that finds a twin's datacubes in the catalogue should find the models
that turn them into forecasts the same way, with their skill and provenance, and tell
which version the twin currently runs. The MLM fields are written by pystac's MLM
extension; the schema they are validated against is vendored in
``stac/schemas/mlm/v1.4.0`` (with the raster schema it refers to), so validation
needs no network.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, cast

import pystac
from pystac.extensions.mlm import (
    AssetGeneralMLMExtension,
    Hyperparameters,
    InputStructure,
    MLMExtension,
    ModelInput,
    ModelOutput,
    ResultStructure,
    TaskType,
)
from pystac.extensions.raster import DataType

from twinmesh.core.errors import InvalidParameter
from twinmesh.core.models import ModelVersion
from twinmesh.core.twin import Twin

__all__ = [
    "MODEL_ASSET_KEY",
    "PARAMETERS_ARTIFACT_TYPE",
    "FRAMEWORK",
    "models_collection_id",
    "model_item_id",
    "parameters_document",
    "model_item",
    "model_collection",
]

#: The asset holding a version's parameters (``parameters_document``).
MODEL_ASSET_KEY = "parameters"
#: ``mlm:artifact_type`` of that asset: the function whose JSON it is.
PARAMETERS_ARTIFACT_TYPE = "twinmesh.stac.models.parameters_document"
#: ``mlm:framework``: twinmesh runs its models itself (GR4J is its own implementation).
FRAMEWORK = "twinmesh"

# MLM's patterns for mlm:framework_version (semantic version) and hyperparameter names.
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_HYPERPARAMETER = re.compile(r"^[0-9a-zA-Z_.-]+$")
# Optional Model Input fields pystac writes as null when absent.
_NULLABLE_INPUT_FIELDS = ("value_scaling", "resize_type", "pre_processing_function")


def models_collection_id(twin_id: str) -> str:
    return f"{twin_id}-models"


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "model"


def model_item_id(version: ModelVersion) -> str:
    """``<twin>-<kind>-v<version>``, e.g. ``fulda-gr4j-v3``."""
    return f"{version.twin}-{_slug(version.kind)}-v{version.version}"


def _mlm_name(version: ModelVersion) -> str:
    """An ``mlm:name`` (letters first, letters/digits/``_.-`` inside, alphanumeric last)."""
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", f"{version.twin}-{version.kind}-v{version.version}")
    return name if name[0].isalpha() else f"model-{name}"


def _bbox_polygon(bbox: list[float]) -> dict[str, Any]:
    """The bbox as a GeoJSON Polygon of plain lists (counter-clockwise), so the Item
    validates as a dict as well as after a JSON round trip."""
    west, south, east, north = bbox
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def parameters_document(version: ModelVersion) -> dict[str, Any]:
    """The JSON the model asset points at: everything needed to run the version."""
    return {
        "ref": version.ref,
        "twin": version.twin,
        "version": version.version,
        "kind": version.kind,
        "parameters": version.parameters,
        "region_parameters": version.region_parameters,
    }


def _series(name: str, description: str) -> ModelInput:
    """A daily series (one value per day, float64), built by pystac; the optional
    fields it leaves null are dropped: null for ``pre_processing_function`` makes a
    validator resolve the processing extension's schema, and absent means the same."""
    model_input = ModelInput.create(
        name=name,
        bands=[],
        input=InputStructure.create(shape=[-1], dim_order=["time"], data_type=DataType.FLOAT64),
        description=description,
    )
    for key in _NULLABLE_INPUT_FIELDS:
        if model_input.properties.get(key, "") is None:
            del model_input.properties[key]
    return model_input


def _rainfall_runoff_io() -> tuple[list[ModelInput], list[ModelOutput]]:
    """What every twinmesh model consumes and produces, per region and day."""
    inputs = [
        _series(
            "precipitation",
            "Daily precipitation over the region (mm day-1), from the twin's forcing cube.",
        ),
        _series(
            "pet",
            "Daily potential evapotranspiration over the region (mm day-1, Oudin), derived "
            "from the forcing cube's temperature.",
        ),
    ]
    outputs = [
        ModelOutput.create(
            name="discharge",
            tasks=[TaskType.REGRESSION],
            result=ResultStructure.create(
                shape=[-1], dim_order=["time"], data_type=DataType.FLOAT64
            ),
            description="Daily streamflow at the region's outlet: a runoff depth (mm day-1) "
            "that the twin converts to discharge (m3 s-1) with the region's area.",
        )
    ]
    return inputs, outputs


def model_item(
    twin: Twin,
    version: ModelVersion,
    *,
    current: bool = False,
    parameters_href: Callable[[ModelVersion], str] | None = None,
) -> pystac.Item:
    """The Item of one model version (MLM extension; asset ``parameters``)."""
    if version.twin != twin.id:
        raise InvalidParameter(f"model {version.ref} is not a model of twin {twin.id!r}")
    bbox = list(twin.bbox)
    item = pystac.Item(
        id=model_item_id(version),
        geometry=_bbox_polygon(bbox),
        bbox=bbox,
        datetime=version.created,
        properties={
            "title": f"{twin.title}: {version.kind} model, version {version.version}",
            "description": version.description or f"{version.kind} model of {twin.title}",
            "twinmesh:twin": twin.id,
            "twinmesh:ref": version.ref,
            "twinmesh:version": version.version,
            "twinmesh:current": current,
            "twinmesh:approved": version.approved,
            "twinmesh:skill": version.skill.model_dump(mode="json", exclude_none=True),
            "twinmesh:provenance": version.provenance.model_dump(mode="json"),
        },
        collection=models_collection_id(twin.id),
    )
    inputs, outputs = _rainfall_runoff_io()
    settings = {
        k: v for k, v in version.provenance.method_settings.items() if _HYPERPARAMETER.match(k)
    }
    code_version = version.provenance.code_version
    MLMExtension.ext(item, add_if_missing=True).apply(
        name=_mlm_name(version),
        architecture=version.kind,
        tasks=[TaskType.REGRESSION],
        input=inputs,
        output=outputs,
        framework=FRAMEWORK,
        framework_version=code_version if _SEMVER.match(code_version) else None,
        total_parameters=len(version.parameters)
        + sum(len(p) for p in version.region_parameters.values()),
        # Calibrated from scratch on the twin's own data: MLM says so with a null source.
        pretrained=False,
        pretrained_source=None,
        hyperparameters=Hyperparameters.create(**settings) if settings else None,
    )
    href = parameters_href(version) if parameters_href else "./parameters.json"
    asset = pystac.Asset(
        href=href,
        title=f"{version.kind} parameters, version {version.version}",
        description="Parameters shared by every region and per-region parameters (JSON).",
        media_type=pystac.MediaType.JSON,
        roles=["mlm:model"],
    )
    item.add_asset(MODEL_ASSET_KEY, asset)
    AssetGeneralMLMExtension.ext(asset, add_if_missing=True).apply(
        artifact_type=PARAMETERS_ARTIFACT_TYPE
    )
    return item


def model_collection(
    twin: Twin,
    versions: list[ModelVersion],
    *,
    current: int | None = None,
    parameters_href: Callable[[ModelVersion], str] | None = None,
) -> pystac.Collection:
    """The Collection ``<twin>-models`` with one Item per version.

    ``current`` is the version the twin runs (``ModelRegistry.current_version``);
    ``parameters_href`` gives each version's parameter JSON href (a URL a client can
    open), by default ``./parameters.json`` beside the Item.
    """
    numbers = [v.version for v in versions]
    if len(set(numbers)) != len(numbers):
        raise InvalidParameter(f"twin {twin.id!r}: model versions listed twice: {numbers}")
    ordered = sorted(versions, key=lambda v: v.version)
    created = [v.created for v in ordered]
    interval = [min(created), max(created)] if created else [None, None]
    collection = pystac.Collection(
        id=models_collection_id(twin.id),
        title=f"{twin.title}: models",
        description=(
            f"Every registered version of the models of the twin {twin.id!r}, with their "
            "skill and provenance. `twinmesh:current` marks the version the twin runs."
        ),
        extent=pystac.Extent(
            pystac.SpatialExtent([list(twin.bbox)]), pystac.TemporalExtent([cast(Any, interval)])
        ),
        license=twin.license,
        providers=[
            pystac.Provider(
                name=p.name, roles=cast(Any, p.roles), url=p.url, description=p.description
            )
            for p in twin.providers
        ],
        keywords=sorted({"model", "hydrology", *twin.keywords}),
        extra_fields={"twinmesh:twin": twin.id, "twinmesh:current": current},
    )
    for version in ordered:
        collection.add_item(
            model_item(
                twin,
                version,
                current=version.version == current,
                parameters_href=parameters_href,
            )
        )
    return collection
