"""``verify``: hindcast the twin's flood warnings over every issue day of a period and
score them against observed discharge at each gauged point.

Why: a policy user acts on a warning only if its record is known — how many floods it
caught, how many of its alarms were false, and whether its probabilities beat simply
quoting the climate — measured on years the model and its thresholds never saw.

What: for every issue day d of the period and every region whose outlet is gauged:

* **event**: the observed discharge reaches the gauge's observed T-year level on one of
  the ``lead_days`` days after d (levels from a Gumbel fit to the observed annual maxima
  of the twin's climate period, which lies outside the verification period);
* **ESP** (the forecast the twin issues): members from the ensemble forcing dataset,
  each run from the model state on d; probability = share of members whose peak in the
  window reaches the model-climate T-year level (:func:`model_thresholds`); a warning
  when the probability reaches ``alert_probability`` (30 %, as the warnings capability);
* **persistence**: a warning when the discharge observed on d is already above the
  observed level (probability 0 or 1);
* **perfect forecast**: one member run on the observed forcing of the window — an upper
  bound on what better weather forecasts could give, not a forecast (probability 0 or 1).

Each system gets hits, misses, false alarms, POD, FAR, CSI and the Brier skill score of
its probabilities against the climatological event frequency of the climate period.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from twinmesh.core.capabilities.declaration import Capability, CapabilityInputs, Record, units
from twinmesh.core.capabilities.early_warning import (
    ALERT_PROBABILITY,
    model_thresholds,
    twin_period,
)
from twinmesh.core.capabilities.hydrology import (
    MAX_LEAD_DAYS,
    SPIN_UP_DAYS,
    RegionForcing,
    region_forcing,
    region_state,
    run_members,
    twin_latitude,
)
from twinmesh.core.ensembles import ENSEMBLE_ROLE
from twinmesh.core.errors import InvalidParameter, OutOfExtent
from twinmesh.core.hydrology.extremes import MIN_YEARS, annual_maxima, fit_gumbel
from twinmesh.core.hydrology.verification import (
    brier_score,
    brier_skill_score,
    contingency,
)
from twinmesh.core.results import OutputKind, Result
from twinmesh.core.runners import runner_for
from twinmesh.core.twin import Twin

if TYPE_CHECKING:
    from twinmesh.core.engine import Engine, Progress
    from twinmesh.core.models import ModelVersion

__all__ = ["VerifyInputs", "VerificationReport", "VERIFY", "SYSTEMS"]

#: The forecast systems scored, in the order reports list them.
SYSTEMS = {
    "esp": "the twin's forecast: ESP members run from the model state on the issue day",
    "persistence": "a warning when the discharge observed on the issue day is already "
    "above the level",
    "perfect_forecast": "the model run on the observed forcing of the lead window, known "
    "only afterwards: an upper bound of skill, not a forecast",
}


class VerifyInputs(CapabilityInputs):
    start: date | None = Field(
        default=None,
        description="First issue day (default: start of the twin's verification period).",
        examples=["1986-01-01"],
    )
    end: date | None = Field(
        default=None,
        description="Last issue day (default: end of the verification period, or the last "
        "day whose lead window is observed).",
        examples=["1988-12-21"],
    )
    lead_days: int = Field(
        default=10,
        ge=1,
        le=MAX_LEAD_DAYS,
        description="Lead window: an event is a flood on any of these days.",
        json_schema_extra=units("d"),
    )
    return_period: int = Field(
        default=2,
        ge=2,
        le=100,
        description="Flood level verified: the T-year return level.",
        json_schema_extra=units("a"),
    )
    alert_probability: float = Field(
        default=ALERT_PROBABILITY,
        ge=0.01,
        le=1.0,
        allow_inf_nan=False,
        description="Share of ESP members that raises a warning.",
        json_schema_extra=units("1"),
    )
    model_version: int | str = Field(
        default="current",
        description="Model version (a number) or alias to verify (default: the approved current).",
    )


class SystemScore(BaseModel):
    hits: int
    misses: int
    false_alarms: int
    correct_negatives: int
    pod: float | None = Field(description="Probability of detection, H/(H+M).")
    far: float | None = Field(description="False alarm ratio, F/(H+F).")
    csi: float | None = Field(description="Critical success index, H/(H+M+F).")
    brier: float = Field(description="Brier score of the exceedance probabilities.")
    bss: float | None = Field(description="Brier skill score against climatology.")


class PointVerification(BaseModel):
    region_id: str
    gauge_id: str
    issue_days: int
    events: int
    observed_threshold_m3s: float
    observed_threshold_source: str
    model_threshold_m3s: float
    model_threshold_source: str
    climatology: float = Field(
        description="Event frequency in the climate period: the Brier reference."
    )
    climatology_source: str
    systems: dict[str, SystemScore]


class NotVerified(BaseModel):
    region_id: str
    reason: str


class VerificationReport(BaseModel):
    """What ``verify`` states: per gauged point, each system's scores."""

    twin_id: str
    model_version: int
    period: dict[str, str]
    lead_days: int
    return_period: int
    alert_probability: float
    ensemble_forcing: str
    systems: dict[str, str]
    points: list[PointVerification]
    not_verified: list[NotVerified]
    notes: list[str] = []


def _period(twin: Twin, inputs: VerifyInputs) -> tuple[date, date]:
    declared = twin_period(twin, "verification_period")
    first = twin.time_extent[0] + timedelta(days=SPIN_UP_DAYS)
    last = twin.time_extent[1] - timedelta(days=inputs.lead_days)
    start = inputs.start or (declared[0] if declared else first)
    end = inputs.end or min(declared[1] if declared else last, last)
    if start > end:
        raise InvalidParameter(f"start {start} is after end {end}")
    if start < first or end > last:
        raise OutOfExtent(
            f"issue days must lie between {first} (after a year of model spin-up) and "
            f"{last} (the record ends {twin.time_extent[1]}, the lead window must be "
            f"observed); got {start}/{end}"
        )
    return start, end


def _observed(engine: Engine, twin: Twin, gauge: str, time: pd.DatetimeIndex) -> np.ndarray | None:
    ds = engine.store.open(twin.id, twin.dataset_for("discharge-observed").id)
    if gauge not in set(map(str, ds["gauge"].values)):
        return None
    series = ds["discharge_m3s"].sel(gauge=gauge).to_series()
    series.index = pd.DatetimeIndex(series.index)
    return np.asarray(series.reindex(time).to_numpy(), dtype="float64")


def _window_max(values: np.ndarray, lead_days: int) -> np.ndarray:
    """For each day i, the max over days i+1..i+lead (NaN when any is missing or beyond
    the series)."""
    out = np.full(values.size, np.nan)
    n = values.size - lead_days
    if n > 0:
        windows = np.lib.stride_tricks.sliding_window_view(values[1:], lead_days)[:n]
        out[:n] = np.where(np.isnan(windows).any(axis=1), np.nan, windows.max(axis=1))
    return out


def _score(prob: np.ndarray, warned: np.ndarray, event: np.ndarray, clim: float) -> SystemScore:
    table = contingency(warned, event).to_dict()
    bss = brier_skill_score(prob, event, clim)
    return SystemScore(
        **table,
        brier=round(brier_score(prob, event), 4),
        bss=None if np.isnan(bss) else round(bss, 4),
    )


def _verify_point(
    engine: Engine,
    twin: Twin,
    model: ModelVersion,
    forcing: RegionForcing,
    k: int,
    obs: np.ndarray,
    inputs: VerifyInputs,
    period: tuple[date, date],
    progress: Any,
) -> PointVerification | str:
    """The scores of one gauged region, or why it cannot be verified."""
    time = forcing.time
    region = forcing.regions[k]
    T, lead = inputs.return_period, inputs.lead_days
    climate = twin_period(twin, "climate_period")
    if climate is None:
        return str(
            twin.properties.get("climate_note")
            or "the twin declares no climate period (years outside the verification "
            "period) to fit the observed flood levels on"
        )
    in_climate = (time >= pd.Timestamp(climate[0])) & (time <= pd.Timestamp(climate[1]))
    maxima = annual_maxima(obs[in_climate], time[in_climate].values)
    if maxima.size < MIN_YEARS:
        return (
            f"the observed record has {maxima.size} complete year(s) in the climate period "
            f"{climate[0]}/{climate[1]}; a Gumbel fit of the observed {T}-year level needs "
            f"{MIN_YEARS}"
        )
    overlap = twin_period(twin, "verification_period")
    obs_level = fit_gumbel(maxima).return_level(T)
    thresholds = model_thresholds(engine, twin, model, forcing, [k], [T])
    model_level = float(thresholds.levels_m3s[0, 0])

    peak_obs = _window_max(obs, lead)
    clim_days = in_climate & np.isfinite(peak_obs)
    climatology = float(np.mean(peak_obs[clim_days] >= obs_level)) if clim_days.any() else 0.0

    days = pd.date_range(pd.Timestamp(period[0]), pd.Timestamp(period[1]), freq="D")
    index = np.asarray(time.get_indexer(days))
    index = index[(index >= 0) & np.isfinite(peak_obs[np.clip(index, 0, None)])]
    if index.size == 0:
        return "no issue day of the period has an observed lead window"
    event = peak_obs[index] >= obs_level

    runner = runner_for(model)
    info = twin.dataset_for(ENSEMBLE_ROLE)
    ens = engine.store.open(twin.id, info.id)
    ens = ens.sel(issued=time[index].values, region=region.id).isel(lead=slice(0, lead))
    ens_p = np.asarray(ens["precipitation"].transpose("issued", "member", "lead").values)
    ens_t = np.asarray(ens["temperature"].transpose("issued", "member", "lead").values)
    lat = twin_latitude(twin)

    p_esp = np.empty(index.size)
    p_pf = np.empty(index.size)
    state = region_state(runner, model, forcing, k, int(index[0]) + 1)
    day = int(index[0])
    for n, i in enumerate(index):
        i = int(i)
        if i > day:  # advance the observed-forcing state to the issue day
            _, state = runner.run(
                model,
                region.id,
                forcing.precipitation_mm[k, day + 1 : i + 1],
                forcing.pet_mm[k, day + 1 : i + 1],
                state,
                temperature_c=forcing.temperature_c[k, day + 1 : i + 1],
            )
            day = i
        valid = time[i + 1 : i + 1 + lead]
        present = np.isfinite(ens_p[n]).all(axis=1) & np.isfinite(ens_t[n]).all(axis=1)
        if not present.any():
            raise OutOfExtent(f"the ensemble forcing has no member on {time[i].date()}")
        q = run_members(
            runner, model, region, ens_p[n][present], ens_t[n][present], valid, lat, state
        )
        p_esp[n] = float(np.mean(q.max(axis=1) >= model_level))
        window = slice(i + 1, i + 1 + lead)
        q_pf = run_members(
            runner,
            model,
            region,
            forcing.precipitation_mm[k, window][None],
            forcing.temperature_c[k, window][None],
            valid,
            lat,
            state,
        )
        p_pf[n] = float(q_pf.max() >= model_level)
        if n % 50 == 0:
            progress(n / index.size)
    persistence = obs[index] >= obs_level
    notes = []
    if overlap and climate[1] >= overlap[0] and climate[0] <= overlap[1]:
        notes.append("climate and verification periods overlap")
    clim_source = f"share of days {climate[0]}/{climate[1]} with an event in the next {lead} days"
    return PointVerification(
        region_id=region.id,
        gauge_id=str(region.outlet_gauge),
        issue_days=int(index.size),
        events=int(event.sum()),
        observed_threshold_m3s=round(obs_level, 2),
        observed_threshold_source=(
            f"Gumbel fit to the {maxima.size} observed annual maxima {climate[0]}/{climate[1]}"
            + ("; " + "; ".join(notes) if notes else "")
        ),
        model_threshold_m3s=round(model_level, 2),
        model_threshold_source=thresholds.source,
        climatology=round(climatology, 4),
        climatology_source=clim_source,
        systems={
            "esp": _score(p_esp, p_esp >= inputs.alert_probability, event, climatology),
            "persistence": _score(persistence.astype(float), persistence, event, climatology),
            "perfect_forecast": _score(p_pf, p_pf >= 0.5, event, climatology),
        },
    )


def compute_verify(engine: Engine, twin: Twin, inputs: VerifyInputs, progress: Progress) -> Result:
    period = _period(twin, inputs)
    model = engine.model(twin, inputs.model_version)
    progress(0.0, "reading forcing")
    forcing = region_forcing(engine.store, twin)
    gauged = [(k, r) for k, r in enumerate(twin.regions) if r.outlet_gauge]
    points: list[PointVerification] = []
    skipped: list[NotVerified] = [
        NotVerified(region_id=r.id, reason="no gauge measures this region's outflow")
        for r in twin.regions
        if not r.outlet_gauge
    ]
    for n, (k, region) in enumerate(gauged):
        progress(n / len(gauged), f"hindcast {region.id}")
        obs = _observed(engine, twin, str(region.outlet_gauge), forcing.time)
        if obs is None:
            skipped.append(
                NotVerified(
                    region_id=region.id,
                    reason=f"gauge {region.outlet_gauge} has no observed discharge",
                )
            )
            continue

        def point_progress(fraction: float, n: int = n, rid: str = region.id) -> None:
            progress((n + fraction) / len(gauged), f"hindcast {rid}")

        found = _verify_point(engine, twin, model, forcing, k, obs, inputs, period, point_progress)
        if isinstance(found, str):
            skipped.append(NotVerified(region_id=region.id, reason=found))
        else:
            points.append(found)
    ens = engine.store.open(twin.id, twin.dataset_for(ENSEMBLE_ROLE).id)
    notes = []
    if int(ens.sizes["member"]) < 5:
        notes.append(
            f"the ensemble forcing has only {int(ens.sizes['member'])} member(s): exceedance "
            "probabilities are coarse"
        )
    report = VerificationReport(
        twin_id=twin.id,
        model_version=model.version,
        period={"start": period[0].isoformat(), "end": period[1].isoformat()},
        lead_days=inputs.lead_days,
        return_period=inputs.return_period,
        alert_probability=inputs.alert_probability,
        ensemble_forcing=str(ens.attrs.get("ensemble_method", "")),
        systems=dict(SYSTEMS),
        points=points,
        not_verified=skipped,
        notes=notes,
    )
    progress(1.0, "scored")
    return Result(
        OutputKind.RECORD,
        "verify",
        twin.id,
        report.model_dump(mode="json"),
        model_version=model.version,
        forcing_mode="hindcast: ESP ensemble forcing; references persistence and the "
        "perfect-forecast bound",
        inputs=inputs.model_dump(mode="json"),
    )


def _verify_bytes(engine: Engine, twin: Twin, inputs: VerifyInputs) -> int:
    return 4096 * (len(twin.regions) + 1)


VERIFY = Capability(
    name="verify",
    title="Verify flood warnings",
    description="Hindcast the flood warnings over every issue day of a period and score "
    "them at each gauged point against observed discharge: hits, misses, false alarms, "
    "POD, FAR, CSI and the Brier skill score, for the ESP forecast and for persistence "
    "and the perfect-forecast bound.",
    inputs=VerifyInputs,
    output=Record(VerificationReport),
    compute=compute_verify,
    estimate_bytes=_verify_bytes,
    keywords=("verification", "skill", "flood", "early warning"),
    report=True,
)
