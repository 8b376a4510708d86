"""Early warnings: flood levels from ensemble forecasts against return-period thresholds
(as GloFAS does), drought levels from the standardized precipitation index."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from twinmesh.core.capabilities.hydrology import forecast
from twinmesh.core.geo import region_mask
from twinmesh.core.hydrology.drought import drought_level
from twinmesh.core.store import DatacubeStore
from twinmesh.core.validation import check_bbox, check_factor

__all__ = [
    "FLOOD_LEVELS",
    "ALERT_PROBABILITY",
    "RegionWarning",
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


def _region_spi(store: DatacubeStore, twin, issued: date) -> dict[str, float | None]:  # noqa: ANN001
    """SPI of each region in the last complete month before the issue day."""
    if not store.has_dataset(twin.id, "spi-3"):
        return {r.id: None for r in twin.regions}
    spi = store.open(twin.id, "spi-3")["spi"]
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


def warnings(
    store: DatacubeStore,
    twin_id: str,
    *,
    issued: date | str | None = None,
    members: int = 20,
    lead_days: int = 10,
    precipitation_factor: float = 1.0,
    seed: int = 0,
    bbox: tuple[float, float, float, float] | list[float] | None = None,
) -> list[RegionWarning]:
    """Flood and drought warning of every region (or those touching ``bbox``)."""
    twin = store.read_twin(twin_id)
    factor = check_factor(precipitation_factor, "precipitation_factor")
    region_ids = None
    if bbox is not None:
        from shapely.geometry import box, shape

        area = box(*check_bbox(bbox, twin.bbox))
        region_ids = [r.id for r in twin.regions if shape(r.geometry).intersects(area)]
        if not region_ids:
            return []
    fc = forecast(
        store,
        twin_id,
        issued=issued,
        members=members,
        lead_days=lead_days,
        precipitation_factor=factor,
        seed=seed,
        regions=region_ids,
    )
    reanalysis = store.open(twin_id, "discharge-reanalysis")
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
                precipitation_factor=factor,
            )
        )
    return out
