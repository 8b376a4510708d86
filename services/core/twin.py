"""The domain: what a twin is, its regions, datasets and models.

A twin is described by one JSON document in the store (``<twin>/twin.json``); the
datacubes it names live next to it as Zarr. Adapters read these objects, never the
files behind them.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from twinmesh.core.errors import NotFoundError, UnknownDataset, UnknownRegion

__all__ = [
    "DATASET_ROLES",
    "BBox",
    "Region",
    "Gauge",
    "Provider",
    "DatasetInfo",
    "ModelInfo",
    "Twin",
]

#: The roles capabilities look datasets up by, and what each must hold.
DATASET_ROLES: dict[str, str] = {
    "forcing": "daily gridded precipitation (mm d-1) and temperature (degC) on t/y/x",
    "discharge-observed": "observed daily discharge at gauges (m3 s-1)",
    "discharge-reanalysis": "simulated daily discharge per region and its return levels "
    "(return_level_m3s over region/return_period)",
    "drought-index": "gridded standardized precipitation index (spi) on t/y/x",
    "forcing-ensemble": "ensemble forcing of forecasts: precipitation (mm d-1) and "
    "temperature (degC) over issued/member/lead/region (NWP members or ESP traces)",
}

#: (west, south, east, north) in WGS84 degrees.
BBox = tuple[float, float, float, float]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Region(_Frozen):
    """A named polygon (a sub-basin) for which the twin issues warnings."""

    id: str
    name: str
    #: GeoJSON Polygon or MultiPolygon in WGS84.
    geometry: dict[str, Any]
    area_km2: float
    description: str = ""
    #: Id of the twin's gauge that measures this region's outflow, if one does:
    #: verification compares the region's warnings with it.
    outlet_gauge: str | None = None


class Gauge(_Frozen):
    """A river gauge whose observed discharge the twin uses."""

    id: str
    name: str
    lon: float
    lat: float
    area_km2: float
    source: str


class Provider(_Frozen):
    name: str
    roles: list[str]
    url: str | None = None
    description: str | None = None


class DatasetInfo(_Frozen):
    """A datacube of the twin: its id, what it holds and where it came from."""

    id: str
    title: str
    description: str
    #: What the dataset is for the capabilities (see DATASET_ROLES): they look a
    #: dataset up by role, so a twin may name its datasets as it likes.
    role: str | None = None
    #: Variable name -> units (CF).
    variables: dict[str, str]
    license: str
    providers: list[Provider] = Field(default_factory=list)
    #: How the data was made; says so when it is generated rather than observed.
    provenance: str
    generated: bool = False
    keywords: list[str] = Field(default_factory=list)


class ModelInfo(_Frozen):
    """A calibrated model of the twin and its measured skill."""

    id: str
    kind: str
    description: str
    #: Parameters shared by every region ...
    parameters: dict[str, float]
    #: ... unless a region has its own (calibrated on its own gauge).
    region_parameters: dict[str, dict[str, float]] = Field(default_factory=dict)
    #: Period, KGE and NSE of calibration and validation.
    skill: dict[str, Any]
    #: Inputs the model was built from (dataset ids) and how.
    trained_on: list[str]
    created: str

    def parameters_for(self, region_id: str) -> dict[str, float]:
        """The parameters the model runs with in one region."""
        return self.region_parameters.get(region_id, self.parameters)


class Twin(_Frozen):
    """A digital twin: a place, its data, its models and what it can do."""

    id: str
    title: str
    description: str
    bbox: BBox
    #: First and last day of the historical record.
    time_extent: tuple[date, date]
    regions: list[Region]
    gauges: list[Gauge] = Field(default_factory=list)
    datasets: list[DatasetInfo]
    models: list[ModelInfo] = Field(default_factory=list)
    #: Names of core capabilities this twin offers (see twinmesh.core.capabilities).
    capabilities: list[str]
    license: str
    providers: list[Provider] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    #: Twin-specific constants the capabilities need (latitude for PET, etc.).
    properties: dict[str, Any] = Field(default_factory=dict)

    def dataset(self, dataset_id: str) -> DatasetInfo:
        for ds in self.datasets:
            if ds.id == dataset_id:
                return ds
        known = ", ".join(d.id for d in self.datasets)
        raise UnknownDataset(
            f"twin {self.id!r} has no dataset {dataset_id!r}; its datasets are: {known}"
        )

    def dataset_for(self, role: str) -> DatasetInfo:
        """The dataset that plays ``role`` (a dataset without a role plays the role named
        like its id, as the first twins were built)."""
        for ds in self.datasets:
            if ds.role == role:
                return ds
        for ds in self.datasets:
            if ds.role is None and ds.id == role:
                return ds
        known = ", ".join(f"{d.id} ({d.role or 'no role'})" for d in self.datasets)
        raise UnknownDataset(
            f"twin {self.id!r} has no dataset with the role {role!r} "
            f"({DATASET_ROLES.get(role, 'see twinmesh.core.twin.DATASET_ROLES')}); "
            f"its datasets: {known}"
        )

    def region(self, region_id: str) -> Region:
        for r in self.regions:
            if r.id == region_id:
                return r
        known = ", ".join(r.id for r in self.regions)
        raise UnknownRegion(
            f"twin {self.id!r} has no region {region_id!r}; its regions are: {known}"
        )

    def model(self, model_id: str | None = None) -> ModelInfo:
        """The model with that id (the first one when ``model_id`` is None)."""
        for m in self.models:
            if model_id is None or m.id == model_id:
                return m
        raise NotFoundError(
            f"twin {self.id!r} has no model {model_id or ''!r}; run `twinmesh demo init`"
        )
