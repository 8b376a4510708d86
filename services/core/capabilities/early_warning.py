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
    RegionForcing,
    compute_forecast,
    forecast_bytes,
    is_perfect_forecast,
    region_forcing,
    select_regions,
)
from twinmesh.core.errors import InvalidParameter
from twinmesh.core.geo import region_mask
from twinmesh.core.hydrology.drought import drought_level
from twinmesh.core.hydrology.extremes import MIN_YEARS, annual_maxima, return_levels
from twinmesh.core.hydrology.gr4j import mm_per_day_to_m3s
from twinmesh.core.results import OutputKind, Result
from twinmesh.core.runners import runner_for
from twinmesh.core.store import DatacubeStore
from twinmesh.core.twin import Twin
from twinmesh.core.validation import check_bbox

if TYPE_CHECKING:
    from twinmesh.core.engine import Engine, Progress
    from twinmesh.core.models import ModelVersion

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
    "Thresholds",
    "model_thresholds",
    "twin_period",
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
    threshold_source: str = ""

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
            threshold_source=p.get("threshold_source", ""),
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


def twin_period(twin: Twin, name: str) -> tuple[date, date] | None:
    """A period the twin declares in its properties (``climate_period``,
    ``verification_period``) as two ISO dates, or None."""
    value = twin.properties.get(name)
    if not value:
        return None
    return date.fromisoformat(str(value[0])), date.fromisoformat(str(value[1]))


@dataclass(frozen=True)
class Thresholds:
    """Flood thresholds of the regions asked for, and how they were made."""

    periods: list[int]
    levels_m3s: np.ndarray  # (region, period)
    source: str


def model_thresholds(
    engine: Engine,
    twin: Twin,
    model: ModelVersion,
    forcing: RegionForcing,
    selected: list[int],
    periods: list[int] | None = None,
) -> Thresholds:
    """Return levels of the model's own climate, judged like the ensemble is.

    A forecast's members are daily discharges simulated by this model version, and a
    member counts when its highest day in the window reaches a level; the levels are
    therefore fitted (Gumbel, L-moments) to annual maxima of the same model's simulated
    daily discharge on the observed forcing of the twin's ``climate_period`` — a period
    outside its ``verification_period``. A twin without a usable climate period (fewer
    than 3 complete years) uses the levels stored with its reanalysis dataset, and the
    source says so.
    """
    if periods is None:
        periods = [int(p) for p in twin.properties.get("return_periods", (2, 5, 20))]
    climate = twin_period(twin, "climate_period")
    runner = runner_for(model)
    time = forcing.time
    if climate is not None:
        in_climate = (time >= pd.Timestamp(climate[0])) & (time <= pd.Timestamp(climate[1]))
        stop = int(np.flatnonzero(in_climate)[-1]) + 1 if in_climate.any() else 0
        levels = []
        years = 0
        for k in selected:
            region = forcing.regions[k]
            q_mm, _ = runner.run(
                model,
                region.id,
                forcing.precipitation_mm[k, :stop],
                forcing.pet_mm[k, :stop],
                temperature_c=forcing.temperature_c[k, :stop],
            )
            q = mm_per_day_to_m3s(q_mm, region.area_km2)
            maxima = annual_maxima(q[in_climate[:stop]], time[:stop][in_climate[:stop]].values)
            years = maxima.size
            if years < MIN_YEARS:
                break
            fit = return_levels(maxima, periods)
            levels.append([fit[p] for p in periods])
        else:
            return Thresholds(
                periods,
                np.array(levels).reshape(len(selected), len(periods)),
                f"Gumbel fit to the {years} annual maxima of model {model.ref}'s simulated "
                f"daily discharge, {climate[0]}/{climate[1]} (outside the verification "
                "period)",
            )
    reanalysis = engine.store.open(twin.id, twin.dataset_for("discharge-reanalysis").id)
    stored = [int(p) for p in reanalysis["return_period"].values]
    missing = [p for p in periods if p not in stored]
    if missing:
        raise InvalidParameter(
            f"twin {twin.id!r} has stored return levels for {stored}-year periods only; "
            f"asked for {missing}"
        )
    region_ids = [forcing.regions[k].id for k in selected]
    values = reanalysis["return_level_m3s"].sel(region=region_ids, return_period=periods).values
    return Thresholds(
        periods,
        np.asarray(values, dtype="float64"),
        "return levels stored with the reanalysis dataset (the twin has no climate "
        "period of 3 complete years in its record): "
        + str(reanalysis.attrs.get("history", "")).split(" ", 1)[-1],
    )


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
    threshold_source: str = Field(default="", description="How the return levels were made.")
    model_version: int | None = None
    forcing_mode: str | None = Field(
        default=None,
        description="What forcing made the warning; 'perfect-forecast reference ...' marks "
        "a run on the observed future (an upper bound of skill, not a forecast).",
    )


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
    forcing = region_forcing(store, twin)
    fc_result = compute_forecast(engine, twin, fc_inputs, progress, forcing)
    fc = fc_result.data
    regions = [str(r) for r in fc["region"].values]
    # The version the forecast ran, even if "current" moved meanwhile.
    model = engine.model(twin, fc_result.model_version or inputs.model_version)
    thresholds = model_thresholds(engine, twin, model, forcing, select_regions(twin, regions))
    periods = thresholds.periods
    peaks = fc["discharge_m3s"].max(dim="t").values  # (member, region)
    probability, levels = issue_warnings(peaks, thresholds.levels_m3s, periods)
    perfect = is_perfect_forecast(fc_result.forcing_mode)
    notes = (
        ["perfect-forecast reference on the observed future forcing: not a forecast"]
        if perfect
        else []
    )
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
                    p: round(float(thresholds.levels_m3s[j, i]), 2) for i, p in enumerate(periods)
                },
                peak_discharge_m3s=round(float(np.median(peaks[:, j])), 2),
                drought_level=drought_level(s) if s is not None else "unknown",
                spi=s,
                issued=issued_d,
                valid_from=valid[0].date(),
                valid_to=valid[-1].date(),
                members=int(fc.sizes["member"]),
                precipitation_factor=inputs.precipitation_factor,
                notes=list(notes),
                threshold_source=thresholds.source,
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
    """Every issued warning goes to the twin's event log (subscribers see it at once).

    A perfect-forecast reference run is not an issued warning: it is never recorded."""
    features = result.data["features"]
    if features and not is_perfect_forecast(result.forcing_mode):
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
    description="Per region: flood level from the 2/5/20-year return levels of the model's "
    "own climate reached by at least 30% of the ensemble members in the lead window, "
    "their probabilities, and a drought level from SPI-3.",
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
