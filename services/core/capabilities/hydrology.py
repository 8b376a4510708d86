"""Hydrological capabilities: run the twin's model over history (``simulate``) and
ahead of an issue date as an ensemble (``forecast``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr
from pydantic import Field

from twinmesh.core.capabilities.declaration import Capability, CapabilityInputs, Coverage, units
from twinmesh.core.errors import OutOfExtent
from twinmesh.core.geo import region_means
from twinmesh.core.hydrology.gr4j import mm_per_day_to_m3s
from twinmesh.core.hydrology.pet import pet_oudin
from twinmesh.core.results import OutputKind, Result
from twinmesh.core.runners import runner_for
from twinmesh.core.store import DatacubeStore
from twinmesh.core.twin import Region, Twin
from twinmesh.core.validation import check_time_range

if TYPE_CHECKING:
    from twinmesh.core.engine import Engine, Progress

__all__ = [
    "simulate",
    "forecast",
    "SimulateInputs",
    "ForecastInputs",
    "SIMULATE",
    "FORECAST",
    "RegionForcing",
    "region_forcing",
    "MAX_MEMBERS",
    "MAX_LEAD_DAYS",
]

MAX_MEMBERS = 200
MAX_LEAD_DAYS = 30
MAX_PRECIPITATION_FACTOR = 10.0
#: Forecast days need a year of model spin-up before them.
SPIN_UP_DAYS = 365
_REGION_IDS = Field(
    default=None,
    description="Region ids to compute (default: every region of the twin).",
    max_length=1000,
    examples=[["fulda-upper"]],
)
_FACTOR = Field(
    default=1.0,
    ge=0.0,
    le=MAX_PRECIPITATION_FACTOR,
    allow_inf_nan=False,
    description="Scenario: multiply precipitation by this factor (1 = as observed).",
    json_schema_extra=units("1"),
)

_MODEL_VERSION = Field(
    default="current",
    description="Model version (a number) or alias to run (default: the approved current).",
)


class SimulateInputs(CapabilityInputs):
    start: date = Field(description="First day simulated (ISO 8601).", examples=["1985-01-01"])
    end: date = Field(description="Last day simulated (ISO 8601).", examples=["1985-12-31"])
    precipitation_factor: float = _FACTOR
    regions: list[str] | None = _REGION_IDS
    model_version: int | str = _MODEL_VERSION


class ForecastInputs(CapabilityInputs):
    issued: date | None = Field(
        default=None,
        description="Issue day; the forecast covers the lead days after it "
        "(default: the latest day the record allows).",
        examples=["1987-06-01"],
    )
    members: int = Field(
        default=20,
        ge=1,
        le=MAX_MEMBERS,
        description="Ensemble members.",
        json_schema_extra=units("1"),
    )
    lead_days: int = Field(
        default=10,
        ge=1,
        le=MAX_LEAD_DAYS,
        description="Lead time.",
        json_schema_extra=units("d"),
    )
    precipitation_factor: float = _FACTOR
    seed: int = Field(
        default=0, ge=0, le=2**32 - 1, description="Seed of the ensemble perturbations."
    )
    regions: list[str] | None = _REGION_IDS
    model_version: int | str = _MODEL_VERSION


@dataclass(frozen=True)
class RegionForcing:
    """Area-mean daily forcing of each region over the twin's whole record."""

    time: pd.DatetimeIndex
    regions: list[Region]
    precipitation_mm: np.ndarray  # (region, t)
    temperature_c: np.ndarray  # (region, t)
    pet_mm: np.ndarray  # (region, t)


def region_forcing(store: DatacubeStore, twin: Twin) -> RegionForcing:
    """Read the twin's forcing cube (the dataset with role ``forcing``) once and reduce
    it to the twin's regions."""
    cube = store.open(twin.id, twin.dataset_for("forcing").id)
    time = pd.DatetimeIndex(cube["t"].values)
    precip = region_means(cube["precipitation"], twin.regions).astype("float64")
    temp = region_means(cube["temperature"], twin.regions).astype("float64")
    lat = _latitude(twin)
    doy = time.day_of_year.to_numpy()
    pet = np.stack([pet_oudin(temp[k], doy, lat) for k in range(len(twin.regions))])
    return RegionForcing(time, twin.regions, precip, temp, pet)


def _latitude(twin: Twin) -> float:
    return float(twin.properties.get("latitude_deg", 0.5 * (twin.bbox[1] + twin.bbox[3])))


def _select_regions(twin: Twin, region_ids: list[str] | None) -> list[int]:
    if not region_ids:
        return list(range(len(twin.regions)))
    index = {r.id: k for k, r in enumerate(twin.regions)}
    for rid in region_ids:
        twin.region(rid)  # raises UnknownRegion with the known ids
    return [index[rid] for rid in region_ids]


def _forcing_mode(factor: float, base: str) -> str:
    return base if factor == 1.0 else f"{base}, precipitation scaled by {factor:g} (scenario)"


def compute_simulate(
    engine: Engine, twin: Twin, inputs: SimulateInputs, progress: Progress
) -> Result:
    """Discharge of each region from ``start`` to ``end`` under a scenario.

    The scenario scales precipitation by ``precipitation_factor`` inside the period;
    the model spins up on the unscaled record before it.
    """
    check_time_range(inputs.start, inputs.end, twin.time_extent)
    factor = inputs.precipitation_factor
    selected = _select_regions(twin, inputs.regions)
    model = engine.model(twin, inputs.model_version)
    runner = runner_for(model)
    progress(0.0, "reading forcing")
    forcing = region_forcing(engine.store, twin)

    t = forcing.time
    in_period = (t >= pd.Timestamp(inputs.start)) & (t <= pd.Timestamp(inputs.end))
    last = int(np.flatnonzero(in_period)[-1]) + 1
    out = np.empty((int(in_period.sum()), len(selected)))
    for j, k in enumerate(selected):
        progress(j / len(selected), f"region {twin.regions[k].id}")
        precip = forcing.precipitation_mm[k, :last].copy()
        precip[in_period[:last]] *= factor
        q_mm, _ = runner.run(model, twin.regions[k].id, precip, forcing.pet_mm[k, :last])
        out[:, j] = mm_per_day_to_m3s(q_mm[in_period[:last]], twin.regions[k].area_km2)

    mode = _forcing_mode(factor, "observed forcing")
    data = xr.Dataset(
        {"discharge_m3s": (("t", "region"), out, {"units": "m3 s-1"})},
        coords={
            "t": t[in_period].values,
            "region": [twin.regions[k].id for k in selected],
        },
        attrs={
            "twin": twin.id,
            "model": model.kind,
            "model_version": model.version,
            "precipitation_factor": factor,
            "forcing_mode": mode,
            "generated": "yes: model simulation",
        },
    )
    return Result(
        OutputKind.COVERAGE,
        "simulate",
        twin.id,
        data,
        model_version=model.version,
        forcing_mode=mode,
        inputs=inputs.model_dump(mode="json"),
    )


def default_issue_date(twin: Twin, lead_days: int) -> date:
    """The latest day a forecast of ``lead_days`` can be issued on (record end - lead)."""
    return twin.time_extent[1] - timedelta(days=lead_days)


def _issue_day(twin: Twin, issued: date | None, lead_days: int) -> date:
    issued_d = default_issue_date(twin, lead_days) if issued is None else issued
    first = twin.time_extent[0] + timedelta(days=SPIN_UP_DAYS)
    latest = default_issue_date(twin, lead_days)
    if not first <= issued_d <= latest:
        raise OutOfExtent(
            f"a {lead_days}-day forecast can be issued from {first} (after a year of model "
            f"spin-up) to {latest} (the record ends {twin.time_extent[1]}); got {issued_d}"
        )
    return issued_d


FORECAST_FORCING = "observed forcing perturbed as a forecast ensemble (hindcast setting)"


def compute_forecast(
    engine: Engine, twin: Twin, inputs: ForecastInputs, progress: Progress
) -> Result:
    """Ensemble discharge forecast of each region for ``lead_days`` after ``issued``.

    Each member starts from the model state reached on the issue day with the
    observed forcing, then runs on the forcing of the lead window perturbed
    multiplicatively for precipitation (log-normal, spread growing with lead time)
    and additively for temperature: the hindcast setting of ensemble verification,
    where the "forecast" forcing is the truth with realistic forecast errors. The
    scenario factor scales the whole window's precipitation.
    """
    members, lead_days, factor = inputs.members, inputs.lead_days, inputs.precipitation_factor
    issued_d = _issue_day(twin, inputs.issued, lead_days)
    selected = _select_regions(twin, inputs.regions)
    model = engine.model(twin, inputs.model_version)
    runner = runner_for(model)
    progress(0.0, "reading forcing")
    forcing = region_forcing(engine.store, twin)

    i0 = int(forcing.time.get_loc(pd.Timestamp(issued_d))) + 1  # first lead day
    window = slice(i0, i0 + lead_days)
    rng = np.random.default_rng(inputs.seed)
    lead = np.arange(1, lead_days + 1)
    sigma_p = 0.25 + 0.05 * lead
    sigma_t = 0.5 + 0.1 * lead
    # One weather error per member and day, shared by the regions (the same storm
    # is misplaced for all of them), plus a smaller independent regional part.
    shared = rng.standard_normal((members, lead_days))
    t_err = rng.standard_normal((members, lead_days)) * sigma_t
    out = np.empty((members, lead_days, len(selected)))
    lat = _latitude(twin)
    for j, k in enumerate(selected):
        region_id = twin.regions[k].id
        progress(j / len(selected), f"region {region_id}")
        _, state = runner.run(
            model, region_id, forcing.precipitation_mm[k, :i0], forcing.pet_mm[k, :i0]
        )
        local = rng.standard_normal((members, lead_days))
        z = 0.8 * shared + 0.6 * local
        precip = (
            forcing.precipitation_mm[k, window][None, :]
            * factor
            * np.exp(sigma_p * z - sigma_p**2 / 2)
        )
        temp = forcing.temperature_c[k, window][None, :] + t_err
        doy = forcing.time[window].day_of_year.to_numpy()
        pet = np.stack([pet_oudin(temp[m], doy, lat) for m in range(members)])
        q_mm, _ = runner.run(model, region_id, precip, pet, state)
        out[:, :, j] = mm_per_day_to_m3s(q_mm, twin.regions[k].area_km2)

    mode = _forcing_mode(factor, FORECAST_FORCING)
    valid = forcing.time[window]
    data = xr.Dataset(
        {"discharge_m3s": (("member", "t", "region"), out, {"units": "m3 s-1"})},
        coords={
            "member": np.arange(members),
            "t": valid.values,
            "region": [twin.regions[k].id for k in selected],
        },
        attrs={
            "twin": twin.id,
            "model": model.kind,
            "model_version": model.version,
            "issued": issued_d.isoformat(),
            "lead_days": lead_days,
            "members": members,
            "precipitation_factor": factor,
            "seed": inputs.seed,
            "forcing_mode": mode,
            "generated": "yes: ensemble model forecast (hindcast setting)",
        },
    )
    return Result(
        OutputKind.COVERAGE,
        "forecast",
        twin.id,
        data,
        model_version=model.version,
        forcing_mode=mode,
        inputs=inputs.model_dump(mode="json"),
    )


def _n_regions(twin: Twin, regions: list[str] | None) -> int:
    return len(regions) if regions else len(twin.regions)


def _simulate_bytes(engine: Engine, twin: Twin, inputs: SimulateInputs) -> int:
    days = max(0, (inputs.end - inputs.start).days + 1)
    return 8 * days * _n_regions(twin, inputs.regions)


def forecast_bytes(engine: Engine, twin: Twin, inputs: ForecastInputs) -> int:
    return 8 * inputs.members * inputs.lead_days * _n_regions(twin, inputs.regions)


SIMULATE = Capability(
    name="simulate",
    title="Simulate discharge",
    description="Run the twin's current model for a period under a precipitation scenario; "
    "daily discharge of each region.",
    inputs=SimulateInputs,
    output=Coverage({"discharge_m3s": "m3 s-1"}, ("t", "region")),
    compute=compute_simulate,
    estimate_bytes=_simulate_bytes,
    keywords=("hydrology", "simulation"),
)

FORECAST = Capability(
    name="forecast",
    title="Ensemble discharge forecast",
    description="Ensemble of N members from perturbed forcing, lead time L days after an "
    "issue day; daily discharge of each member and region.",
    inputs=ForecastInputs,
    output=Coverage({"discharge_m3s": "m3 s-1"}, ("member", "t", "region")),
    compute=compute_forecast,
    estimate_bytes=forecast_bytes,
    keywords=("hydrology", "forecast", "ensemble"),
)


def simulate(engine: Engine, twin_id: str, start: Any, end: Any, **inputs: Any) -> xr.Dataset:
    """``simulate`` through the engine (validated, size-checked): the dataset."""
    result = engine.run(twin_id, "simulate", {"start": start, "end": end, **inputs})
    data: xr.Dataset = result.data
    return data


def forecast(engine: Engine, twin_id: str, **inputs: Any) -> xr.Dataset:
    """``forecast`` through the engine (validated, size-checked): the dataset."""
    data: xr.Dataset = engine.run(twin_id, "forecast", inputs).data
    return data
