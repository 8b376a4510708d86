"""Hydrological capabilities: run the twin's model over history (``simulate``) and
ahead of an issue date as an ensemble (``forecast``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from pydantic import Field

from twinmesh.core.capabilities.declaration import Capability, CapabilityInputs, Coverage, units
from twinmesh.core.ensembles import ensemble_extent, read_ensemble
from twinmesh.core.errors import InvalidParameter, OutOfExtent
from twinmesh.core.geo import region_means
from twinmesh.core.hydrology.gr4j import mm_per_day_to_m3s
from twinmesh.core.hydrology.pet import pet_oudin
from twinmesh.core.results import OutputKind, Result
from twinmesh.core.runners import ModelRunner, runner_for
from twinmesh.core.store import DatacubeStore
from twinmesh.core.twin import Region, Twin
from twinmesh.core.validation import check_time_range

if TYPE_CHECKING:
    from twinmesh.core.engine import Engine, Progress
    from twinmesh.core.models import ModelVersion

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
    "FORCING_ENSEMBLE",
    "FORCING_OBSERVED",
    "PERFECT_FORECAST",
    "is_perfect_forecast",
    "region_state",
    "select_regions",
    "twin_latitude",
    "run_members",
    "compute_forecast",
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
    examples=[["upper-fulda"]],
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
        "(default: the latest day the forcing allows).",
        examples=["1987-06-01"],
    )
    forcing: Literal["ensemble", "observed"] = Field(
        default="ensemble",
        description="ensemble: members from the twin's ensemble forcing dataset (for the "
        "demo twins ESP historical traces, never the verified year); observed: the "
        "perfect-forecast reference on the observed forcing of the lead window (one "
        "member; not a forecast).",
    )
    members: int | None = Field(
        default=None,
        ge=1,
        le=MAX_MEMBERS,
        description="Ensemble members (default: every member the ensemble forcing has "
        "on the issue day).",
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
    lat = twin_latitude(twin)
    doy = time.day_of_year.to_numpy()
    pet = np.stack([pet_oudin(temp[k], doy, lat) for k in range(len(twin.regions))])
    return RegionForcing(time, twin.regions, precip, temp, pet)


def twin_latitude(twin: Twin) -> float:
    return float(twin.properties.get("latitude_deg", 0.5 * (twin.bbox[1] + twin.bbox[3])))


def select_regions(twin: Twin, region_ids: list[str] | None) -> list[int]:
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
    selected = select_regions(twin, inputs.regions)
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
        q_mm, _ = runner.run(
            model,
            twin.regions[k].id,
            precip,
            forcing.pet_mm[k, :last],
            temperature_c=forcing.temperature_c[k, :last],
        )
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


FORCING_ENSEMBLE = "ensemble"
FORCING_OBSERVED = "observed"
#: How a perfect-forecast run is labelled wherever its result goes: never a forecast.
PERFECT_FORECAST = (
    "perfect-forecast reference: the observed forcing of the lead window, known only "
    "afterwards (an upper bound of skill, not a forecast)"
)


def ensemble_mode(method: str, members: int) -> str:
    """The forcing mode of a forecast made from an ensemble forcing dataset."""
    return f"forecast from ensemble forcing, {members} member(s): {method}"


def is_perfect_forecast(forcing_mode: str | None) -> bool:
    """Whether a result was made on the observed future forcing (not a forecast)."""
    return bool(forcing_mode) and str(forcing_mode).startswith("perfect-forecast reference")


def default_issue_date(twin: Twin, lead_days: int) -> date:
    """The latest day a perfect-forecast reference of ``lead_days`` can be issued on
    (the observed forcing must cover the lead window)."""
    return twin.time_extent[1] - timedelta(days=lead_days)


def _issue_day(
    engine: Engine, twin: Twin, issued: date | None, lead_days: int, forcing: str
) -> date:
    first = twin.time_extent[0] + timedelta(days=SPIN_UP_DAYS)
    if forcing == FORCING_OBSERVED:
        latest = default_issue_date(twin, lead_days)
        why = f"the observed forcing ends {twin.time_extent[1]}"
    else:
        _, latest, _, _ = ensemble_extent(engine.store, twin)
        latest = min(latest, twin.time_extent[1])
        why = f"the record and its ensemble forcing end {latest}"
    issued_d = latest if issued is None else issued
    if not first <= issued_d <= latest:
        raise OutOfExtent(
            f"a {lead_days}-day forecast can be issued from {first} (after a year of model "
            f"spin-up) to {latest} ({why}); got {issued_d}"
        )
    return issued_d


def region_state(
    runner: ModelRunner,
    model: ModelVersion,
    forcing: RegionForcing,
    k: int,
    stop: int,
) -> Any:
    """The model state of region ``k`` after running the observed record up to (not
    including) index ``stop``: the state a forecast issued on day ``stop - 1`` starts from."""
    _, state = runner.run(
        model,
        forcing.regions[k].id,
        forcing.precipitation_mm[k, :stop],
        forcing.pet_mm[k, :stop],
        temperature_c=forcing.temperature_c[k, :stop],
    )
    return state


def run_members(
    runner: ModelRunner,
    model: ModelVersion,
    region: Region,
    precipitation_mm: np.ndarray,
    temperature_c: np.ndarray,
    valid: pd.DatetimeIndex,
    latitude_deg: float,
    state: Any,
) -> np.ndarray:
    """Discharge (m3/s, member x lead) of members run from ``state`` on their own
    precipitation and temperature (member x lead); PET follows each member's temperature."""
    pet = pet_oudin(temperature_c, valid.day_of_year.to_numpy()[None, :], latitude_deg)
    q_mm, _ = runner.run(
        model, region.id, precipitation_mm, pet, state, temperature_c=temperature_c
    )
    return mm_per_day_to_m3s(q_mm, region.area_km2)


def compute_forecast(
    engine: Engine,
    twin: Twin,
    inputs: ForecastInputs,
    progress: Progress,
    forcing: RegionForcing | None = None,
) -> Result:
    """Ensemble discharge forecast of each region for ``lead_days`` after ``issued``.

    Every member starts from the model state reached on the issue day with the
    observed record, then runs on one member of the twin's ensemble forcing dataset
    (for the demo twins: ESP historical traces, see :mod:`twinmesh.core.ensembles`).
    ``forcing="observed"`` runs one member on the observed forcing of the lead window
    instead: the perfect-forecast reference, labelled as such and never a forecast.
    The scenario factor scales the members' precipitation.
    """
    lead_days, factor = inputs.lead_days, inputs.precipitation_factor
    if inputs.forcing == FORCING_OBSERVED and inputs.members not in (None, 1):
        raise InvalidParameter(
            "forcing='observed' runs one member (the observed forcing is deterministic); "
            f"members={inputs.members} is more"
        )
    issued_d = _issue_day(engine, twin, inputs.issued, lead_days, inputs.forcing)
    selected = select_regions(twin, inputs.regions)
    model = engine.model(twin, inputs.model_version)
    runner = runner_for(model)
    progress(0.0, "reading forcing")
    forcing = forcing or region_forcing(engine.store, twin)
    region_ids = [twin.regions[k].id for k in selected]
    i0 = int(forcing.time.get_loc(pd.Timestamp(issued_d))) + 1  # first lead day
    valid = pd.date_range(pd.Timestamp(issued_d) + pd.Timedelta(days=1), periods=lead_days)
    if inputs.forcing == FORCING_OBSERVED:
        window = slice(i0, i0 + lead_days)
        precip = forcing.precipitation_mm[selected][:, window].T[None]  # (1, lead, region)
        temp = forcing.temperature_c[selected][:, window].T[None]
        mode = PERFECT_FORECAST
        starts: list[date | None] = [None]
    else:
        ens = read_ensemble(engine.store, twin, issued_d, lead_days, region_ids, inputs.members)
        precip, temp, starts = ens.precipitation_mm, ens.temperature_c, ens.trace_start
        mode = ensemble_mode(ens.method, ens.members)
    members = precip.shape[0]
    lat = twin_latitude(twin)
    out = np.empty((members, lead_days, len(selected)))
    for j, k in enumerate(selected):
        progress(j / len(selected), f"region {twin.regions[k].id}")
        state = region_state(runner, model, forcing, k, i0)
        out[:, :, j] = run_members(
            runner,
            model,
            twin.regions[k],
            precip[:, :, j] * factor,
            temp[:, :, j],
            valid,
            lat,
            state,
        )

    mode = _forcing_mode(factor, mode)
    perfect = inputs.forcing == FORCING_OBSERVED
    data = xr.Dataset(
        {"discharge_m3s": (("member", "t", "region"), out, {"units": "m3 s-1"})},
        coords={
            "member": np.arange(members),
            "t": valid.values,
            "region": region_ids,
            "trace_start": (
                "member",
                np.array(
                    [np.datetime64(s, "ns") if s else np.datetime64("NaT", "ns") for s in starts]
                ),
                {"long_name": "first day of the member's historical forcing trace"},
            ),
        },
        attrs={
            "twin": twin.id,
            "model": model.kind,
            "model_version": model.version,
            "issued": issued_d.isoformat(),
            "lead_days": lead_days,
            "members": members,
            "precipitation_factor": factor,
            "forcing": inputs.forcing,
            "forcing_mode": mode,
            "generated": (
                "yes: " + PERFECT_FORECAST
                if perfect
                else "yes: ensemble model forecast from forcing known on the issue day"
            ),
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
    members = inputs.members or MAX_MEMBERS
    return 8 * members * inputs.lead_days * _n_regions(twin, inputs.regions)


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
    description="Ensemble of members run from the model state on an issue day with the "
    "twin's ensemble forcing (ESP historical traces for the demo twins), lead time L days; "
    "daily discharge of each member and region. forcing=observed gives the perfect-forecast "
    "reference instead (labelled so, not a forecast).",
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
