"""Early warnings: flood levels from ensemble forecasts against return-period thresholds
(as GloFAS does), drought levels from the standardized precipitation index."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from twinmesh.core.capabilities.declaration import Capability, Features
from twinmesh.core.capabilities.hydrology import (
    ForecastInputs,
    compute_forecast,
    forecast_bytes,
)
from twinmesh.core.geo import region_mask
from twinmesh.core.hydrology.drought import drought_level
from twinmesh.core.results import OutputKind, Result
from twinmesh.core.store import DatacubeStore
from twinmesh.core.twin import Twin
from twinmesh.core.validation import check_bbox

if TYPE_CHECKING:
    from twinmesh.core.engine import Engine, Progress

__all__ = [
    "FLOOD_LEVELS",
    "ALERT_PROBABILITY",
    "RegionWarning",
    "WarningsInputs",
    "WarningProperties",
    "WARNINGS",
    "issue_warnings",
    "flood_levels",
    "warnings",
]

#: Flood levels by the return period whose threshold the ensemble exceeds
#: (GloFAS: 2-year medium, 5-year high, 20-year severe).
FLOOD_LEVELS = {0: "none", 2: "medium", 5: "high", 20: "severe"}
#: Share of ensemble members that must exceed a threshold to raise its level (GloFAS: 30%).
ALERT_PROBABILITY = 0.3


@dataclass(frozen=True)
class RegionWarning:
    """The warning state of one region at one issue time."""

    twin_id: str
    region_id: str
    region_name: str
    geometry: dict[str, Any]
    flood_level: str
    #: Share of members whose peak exceeds each return level, keyed by period (years).
    flood_probability: dict[int, float]
    thresholds_m3s: dict[int, float]
    peak_discharge_m3s: float
    drought_level: str
    spi: float | None
    issued: date
    valid_from: date
    valid_to: date
    members: int
    precipitation_factor: float = 1.0
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_feature(cls, feature: dict[str, Any]) -> RegionWarning:
        """Back from a warnings feature (what :meth:`to_dict` and the geometry made)."""
        p = feature["properties"]
        return cls(
            twin_id=p["twin_id"],
            region_id=p["region_id"],
            region_name=p["region_name"],
            geometry=feature["geometry"],
            flood_level=p["flood_level"],
            flood_probability={int(k): v for k, v in p["flood_probability"].items()},
            thresholds_m3s={int(k): v for k, v in p["thresholds_m3s"].items()},
            peak_discharge_m3s=p["peak_discharge_m3s"],
            drought_level=p["drought_level"],
            spi=p["spi"],
            issued=date.fromisoformat(p["issued"]),
            valid_from=date.fromisoformat(p["valid_from"]),
            valid_to=date.fromisoformat(p["valid_to"]),
            members=p["members"],
            precipitation_factor=p["precipitation_factor"],
            notes=list(p.get("notes", [])),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("issued", "valid_from", "valid_to"):
            d[k] = d[k].isoformat()
        d["flood_probability"] = {str(k): v for k, v in self.flood_probability.items()}
        d["thresholds_m3s"] = {str(k): v for k, v in self.thresholds_m3s.items()}
        return d


def flood_levels(
    probability: np.ndarray, periods: list[int], min_probability: float = ALERT_PROBABILITY
) -> list[str]:
    """Per region, the level of the longest return period exceeded by enough members.

    ``probability`` is (region, period) with periods ascending.
    """
    levels = []
    for row in probability:
        level = "none"
        for p, prob in zip(periods, row, strict=True):
            if prob >= min_probability:
                level = FLOOD_LEVELS.get(p, f"{p}-year")
        levels.append(level)
    return levels


def issue_warnings(
    peaks_m3s: np.ndarray, thresholds_m3s: np.ndarray, periods: list[int]
) -> tuple[np.ndarray, list[str]]:
    """Exceedance probabilities (region, period) and levels from ensemble peaks.

    ``peaks_m3s`` is (member, region): each member's highest discharge in the window;
    ``thresholds_m3s`` is (region, period).
    """
    exceed = peaks_m3s[:, :, None] >= thresholds_m3s[None, :, :]
    probability = exceed.mean(axis=0)
    return probability, flood_levels(probability, periods)


def _region_spi(store: DatacubeStore, twin: Twin, issued: date) -> dict[str, float | None]:
    """SPI of each region in the last complete month before the issue day."""
    info = next((d for d in twin.datasets if (d.role or d.id) in ("drought-index", "spi-3")), None)
    if info is None or not store.has_dataset(twin.id, info.id):
        return {r.id: None for r in twin.regions}
    spi = store.open(twin.id, info.id)["spi"]
    month = (pd.Timestamp(issued) + timedelta(days=1)).to_period("M") - 1
    times = pd.DatetimeIndex(spi["t"].values).to_period("M")
    idx = np.flatnonzero(times == month)
    if idx.size == 0:
        return {r.id: None for r in twin.regions}
    grid = spi.isel(t=int(idx[0])).values
    out: dict[str, float | None] = {}
    for r in twin.regions:
        values = grid[region_mask(r, spi["x"].values, spi["y"].values)]
        values = values[np.isfinite(values)]
        out[r.id] = round(float(values.mean()), 3) if values.size else None
    return out


class WarningsInputs(ForecastInputs):
    bbox: list[float] | None = Field(
        default=None,
        min_length=4,
        max_length=4,
        description="Only regions touching this box: west, south, east, north (WGS84 degrees).",
        examples=[[9.4, 50.4, 10.0, 51.0]],
    )


class WarningProperties(BaseModel):
    """What each warning feature states (the feature's geometry is its region)."""

    twin_id: str
    region_id: str
    region_name: str
    flood_level: str = Field(description="none, medium (2-year), high (5-year), severe (20-year)")
    flood_probability: dict[str, float] = Field(
        description="Share of members above each return level, keyed by period (years)."
    )
    thresholds_m3s: dict[str, float]
    peak_discharge_m3s: float
    drought_level: str
    spi: float | None
    issued: date
    valid_from: date
    valid_to: date
    members: int
    precipitation_factor: float
    notes: list[str] = []
    model_version: int | None = None
    forcing_mode: str | None = None


def region_warnings(
    engine: Engine, twin: Twin, inputs: WarningsInputs, progress: Progress
) -> tuple[list[RegionWarning], Result | None]:
    """Flood and drought warning of every region (or those touching ``bbox``), and the
    forecast they were issued from (None when no region touches the bbox)."""
    store = engine.store
    region_ids = inputs.regions
    if inputs.bbox is not None:
        from shapely.geometry import box, shape

        area = box(*check_bbox(inputs.bbox, twin.bbox))
        touching = [r.id for r in twin.regions if shape(r.geometry).intersects(area)]
        region_ids = [r for r in touching if not region_ids or r in region_ids]
        if not region_ids:
            return [], None
    fc_inputs = ForecastInputs.model_validate(
        {**inputs.model_dump(exclude={"bbox"}), "regions": region_ids}
    )
    fc_result = compute_forecast(engine, twin, fc_inputs, progress)
    fc = fc_result.data
    reanalysis = store.open(twin.id, twin.dataset_for("discharge-reanalysis").id)
    periods = [int(p) for p in reanalysis["return_period"].values]
    regions = [str(r) for r in fc["region"].values]
    thresholds = reanalysis["return_level_m3s"].sel(region=regions).values
    peaks = fc["discharge_m3s"].max(dim="t").values  # (member, region)
    probability, levels = issue_warnings(peaks, thresholds, periods)
    issued_d = date.fromisoformat(fc.attrs["issued"])
    spi = _region_spi(store, twin, issued_d)
    valid = pd.DatetimeIndex(fc["t"].values)
    out = []
    for j, rid in enumerate(regions):
        region = twin.region(rid)
        s = spi.get(rid)
        out.append(
            RegionWarning(
                twin_id=twin.id,
                region_id=rid,
                region_name=region.name,
                geometry=region.geometry,
                flood_level=levels[j],
                flood_probability={p: float(probability[j, i]) for i, p in enumerate(periods)},
                thresholds_m3s={
                    p: round(float(thresholds[j, i]), 2) for i, p in enumerate(periods)
                },
                peak_discharge_m3s=round(float(np.median(peaks[:, j])), 2),
                drought_level=drought_level(s) if s is not None else "unknown",
                spi=s,
                issued=issued_d,
                valid_from=valid[0].date(),
                valid_to=valid[-1].date(),
                members=int(fc.sizes["member"]),
                precipitation_factor=inputs.precipitation_factor,
            )
        )
    return out, fc_result


def compute_warnings(
    engine: Engine, twin: Twin, inputs: WarningsInputs, progress: Progress
) -> Result:
    found, fc = region_warnings(engine, twin, inputs, progress)
    model_version = fc.model_version if fc else None
    forcing_mode = fc.forcing_mode if fc else None
    features = []
    for w in found:
        props = w.to_dict()
        geometry = props.pop("geometry")
        props.update(model_version=model_version, forcing_mode=forcing_mode)
        features.append(
            {"type": "Feature", "id": w.region_id, "geometry": geometry, "properties": props}
        )
    return Result(
        OutputKind.FEATURES,
        "warnings",
        twin.id,
        {"type": "FeatureCollection", "features": features},
        model_version=model_version,
        forcing_mode=forcing_mode,
        inputs=inputs.model_dump(mode="json"),
    )


def record_issued_warnings(engine: Engine, result: Result, job_id: str | None) -> None:
    """Every issued warning goes to the twin's event log (subscribers see it at once)."""
    features = result.data["features"]
    if features:
        engine.log.record_warnings(
            result.twin_id,
            [f["properties"] for f in features],
            model_version=None if result.model_version is None else str(result.model_version),
            job_id=job_id,
        )


def _warnings_bytes(engine: Engine, twin: Twin, inputs: WarningsInputs) -> int:
    return forecast_bytes(engine, twin, inputs) + 4096 * len(twin.regions)


WARNINGS = Capability(
    name="warnings",
    title="Flood and drought early warnings",
    description="Per region: flood level from 2/5/20-year return levels exceeded by at least "
    "30% of ensemble members, their probabilities, and a drought level from SPI-3.",
    inputs=WarningsInputs,
    output=Features(WarningProperties),
    compute=compute_warnings,
    estimate_bytes=_warnings_bytes,
    keywords=("early warning", "flood", "drought"),
    record=record_issued_warnings,
)


def warnings(engine: Engine, twin_id: str, **inputs: Any) -> list[RegionWarning]:
    """The warnings through the engine (validated, recorded in the event log)."""
    result = engine.run(twin_id, "warnings", inputs)
    return [RegionWarning.from_feature(f) for f in result.data["features"]]
