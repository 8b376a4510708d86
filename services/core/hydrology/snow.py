"""CemaNeige snow accounting for GR4J, a clean-room implementation of the published equations.

Why: GR4J treats all precipitation as rain, so in catchments with winter snow it sends snowfall
to the river on the day it falls and misses the spring floods of snowmelt. CemaNeige stores
solid precipitation as a snowpack and releases it by a degree-day melt, which is all GR4J needs
to simulate both.

What: the two-parameter CemaNeige routine of Valery, Andreassian & Perrin (2014), "'As simple as
possible but not simpler': What is useful in a temperature-based snow-accounting routine? Part 2
- Sensitivity analysis of the Cemaneige snow accounting routine on 380 catchments", J. Hydrol.
517:1176-1187, for one elevation band (lumped), written from the equations of that paper. The
time loop is compiled with numba. Water quantities are depths over the catchment, in mm (the
snowpack, as water equivalent) or mm/day (fluxes); temperatures are daily means in deg C.

One day, for precipitation P (mm/day) and air temperature T (deg C):

* solid fraction (USACE, mean temperature only): Fsol = 1 for T <= -1, 0 for T >= 3, linear in
  between; Psol = Fsol P, Pliq = P - Psol;
* snowpack G <- G + Psol;
* thermal state of the snowpack eTG <- min(0, CTG eTG + (1 - CTG) T);
* potential melt PotMelt = min(G, Kf (T - Tmelt)) if eTG = 0 and T > Tmelt (= 0 deg C), else 0;
* snow-covered fraction Gratio = min(G / Gthreshold, 1), with G before melt and
  Gthreshold = 0.9 * the mean annual solid precipitation of the catchment;
* melt = (0.9 Gratio + 0.1) PotMelt (0.1 = MinSpeed), G <- G - melt;
* GR4J receives Pliq + melt as its precipitation; PET is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from numba import njit

from twinmesh.core.hydrology.gr4j import (
    GR4JParams,
    GR4JState,
    broadcast_daily,
    initial_state,
    run_gr4j,
)

__all__ = [
    "SNOW_PARAM_NAMES",
    "SNOW_PARAM_BOUNDS",
    "RAIN_SNOW_T_LOW_C",
    "RAIN_SNOW_T_HIGH_C",
    "MELT_THRESHOLD_C",
    "MIN_MELT_SPEED",
    "SNOW_THRESHOLD_FLOOR_MM",
    "CemaNeigeParams",
    "SnowState",
    "SnowFluxes",
    "GR4JSnowState",
    "initial_snow_state",
    "solid_fraction",
    "snow_threshold_mm",
    "run_cemaneige",
    "run_gr4j_snow",
]

#: Parameter names in the order used by ``CemaNeigeParams.as_array``.
SNOW_PARAM_NAMES: tuple[str, str] = ("ctg", "kf_mm_per_degc_day")

#: Calibration search box. CTG: weight of yesterday's thermal state in today's (dimensionless,
#: 0 = the snowpack takes the air temperature at once, 1 = it never changes); Kf: degree-day
#: melt factor (mm per deg C per day).
SNOW_PARAM_BOUNDS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "ctg": (0.0, 1.0),
        "kf_mm_per_degc_day": (0.0, 10.0),
    }
)

#: At or below this temperature all precipitation is snow (deg C).
RAIN_SNOW_T_LOW_C = -1.0
#: At or above this temperature all precipitation is rain (deg C).
RAIN_SNOW_T_HIGH_C = 3.0
#: Air temperature above which a snowpack at 0 deg C melts (Tmelt, deg C).
MELT_THRESHOLD_C = 0.0
#: Fraction of the potential melt that still happens on a nearly snow-free catchment.
MIN_MELT_SPEED = 0.1
#: Gthreshold as the mean annual solid precipitation: Gthreshold = 0.9 * QNBV.
_THRESHOLD_SHARE_OF_ANNUAL_SNOW = 0.9
#: Days per year used to annualise the solid precipitation of a record.
_DAYS_PER_YEAR = 365.25
#: ``snow_threshold_mm`` of a record without any solid precipitation (mm). Any positive value
#: gives the same simulation then (no snow ever falls); it only has to keep G / Gthreshold finite.
SNOW_THRESHOLD_FLOOR_MM = 1e-3


@dataclass(frozen=True)
class CemaNeigeParams:
    """The two CemaNeige parameters: CTG (dimensionless) and the melt factor Kf."""

    ctg: float
    kf_mm_per_degc_day: float

    def __post_init__(self) -> None:
        values = self.as_array()
        if not np.all(np.isfinite(values)):
            raise ValueError(f"CemaNeige parameters must be finite numbers, got {values.tolist()}")
        if not 0.0 <= self.ctg <= 1.0:
            raise ValueError(f"ctg must lie in [0, 1], got {self.ctg}")
        if self.kf_mm_per_degc_day < 0.0:
            raise ValueError(
                f"kf_mm_per_degc_day must be >= 0 (a melt factor), got {self.kf_mm_per_degc_day}"
            )

    def as_array(self) -> np.ndarray:
        """Return ``[ctg, kf_mm_per_degc_day]`` as a float64 array (the optimiser's view)."""
        return np.array([self.ctg, self.kf_mm_per_degc_day], dtype=np.float64)

    @classmethod
    def from_array(cls, values: np.ndarray | list[float] | tuple[float, ...]) -> CemaNeigeParams:
        """Build parameters from ``[ctg, kf_mm_per_degc_day]``."""
        arr = np.asarray(values, dtype=np.float64).ravel()
        if arr.size != 2:
            raise ValueError(f"CemaNeige has 2 parameters (ctg, kf), got {arr.size} values")
        return cls(float(arr[0]), float(arr[1]))


@dataclass
class SnowState:
    """Snowpack state between two days.

    Why: a forecast starts from the snowpack reached at the end of the historical run.

    ``snowpack_mm`` (G) is the water equivalent of the snowpack (mm, >= 0) and
    ``thermal_state_degc`` (eTG) its thermal state (deg C, <= 0). A single state holds scalars,
    the state of an ensemble arrays of shape ``(members,)``. Arrays are copied on construction.
    """

    snowpack_mm: np.ndarray
    thermal_state_degc: np.ndarray

    def __post_init__(self) -> None:
        self.snowpack_mm = np.array(self.snowpack_mm, dtype=np.float64, copy=True)
        self.thermal_state_degc = np.array(self.thermal_state_degc, dtype=np.float64, copy=True)
        batch = self.snowpack_mm.shape
        if len(batch) > 1:
            raise ValueError(f"snowpack_mm must be a scalar or 1-D, got shape {batch}")
        if self.thermal_state_degc.shape != batch:
            raise ValueError(
                f"thermal_state_degc has shape {self.thermal_state_degc.shape}, "
                f"snowpack_mm has shape {batch}"
            )
        if not np.all(np.isfinite(self.snowpack_mm)) or np.any(self.snowpack_mm < 0):
            raise ValueError("snowpack_mm must be finite and non-negative")
        if not np.all(np.isfinite(self.thermal_state_degc)) or np.any(self.thermal_state_degc > 0):
            raise ValueError(
                "thermal_state_degc must be finite and <= 0 (a snowpack is never above 0 deg C)"
            )

    @property
    def members(self) -> int | None:
        """Number of ensemble members, or None for a single state."""
        return None if self.snowpack_mm.ndim == 0 else int(self.snowpack_mm.shape[0])

    def member(self, index: int) -> SnowState:
        """The state of one ensemble member, as a single state."""
        if self.members is None:
            raise ValueError("this is a single state, not an ensemble state")
        return SnowState(self.snowpack_mm[index], self.thermal_state_degc[index])

    def copy(self) -> SnowState:
        """An independent copy."""
        return SnowState(self.snowpack_mm, self.thermal_state_degc)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (floats or lists of floats), for persisting a state."""
        return {
            "snowpack_mm": self.snowpack_mm.tolist(),
            "thermal_state_degc": self.thermal_state_degc.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SnowState:
        """Inverse of ``to_dict``."""
        return cls(data["snowpack_mm"], data["thermal_state_degc"])


def initial_snow_state() -> SnowState:
    """A snow-free start: no snowpack and a thermal state of 0 deg C.

    Why: a run needs a starting point; starting the warm-up outside winter removes its influence.
    """
    return SnowState(np.asarray(0.0), np.asarray(0.0))


@dataclass(frozen=True)
class SnowFluxes:
    """Daily fluxes and snowpack of a CemaNeige run, with the final state.

    Every array has the shape of the forcing (days, or members x days), in mm/day for fluxes and
    mm for the snowpack at the end of each day. ``liquid_mm`` (rain plus melt) is what GR4J
    receives as precipitation.
    """

    liquid_mm: np.ndarray
    melt_mm: np.ndarray
    solid_mm: np.ndarray
    snowpack_mm: np.ndarray
    final_state: SnowState


def solid_fraction(temperature_c: np.ndarray | float) -> np.ndarray:
    """Fraction of precipitation falling as snow at a daily mean temperature (USACE formula).

    1 at or below ``RAIN_SNOW_T_LOW_C`` (-1 deg C), 0 at or above ``RAIN_SNOW_T_HIGH_C``
    (3 deg C), linear in between. NaN temperatures give NaN.
    """
    temp = np.asarray(temperature_c, dtype=np.float64)
    span = RAIN_SNOW_T_HIGH_C - RAIN_SNOW_T_LOW_C
    return np.clip(1.0 - (temp - RAIN_SNOW_T_LOW_C) / span, 0.0, 1.0)


def _check_finite(name: str, arr: np.ndarray) -> None:
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values; fill gaps before running")


def _check_precipitation(precip: np.ndarray) -> None:
    _check_finite("precipitation_mm", precip)
    if np.any(precip < 0):
        raise ValueError("precipitation_mm contains negative values")


def _check_threshold(g_threshold_mm: float) -> None:
    if not (np.isfinite(g_threshold_mm) and g_threshold_mm > 0):
        raise ValueError(
            f"g_threshold_mm must be a finite number > 0 (0.9 x mean annual solid precipitation, "
            f"see snow_threshold_mm), got {g_threshold_mm}"
        )


def snow_threshold_mm(
    precipitation_mm: np.ndarray, temperature_c: np.ndarray, years: np.ndarray
) -> float:
    """Gthreshold: 0.9 times the mean annual solid precipitation of a record (mm).

    Why: the snow-covered fraction of the catchment is G / Gthreshold, so the threshold scales
    with how much snow the catchment usually gets. It is a catchment constant taken from the
    forcing, not calibrated.

    ``precipitation_mm`` (mm/day), ``temperature_c`` (deg C) and ``years`` (the calendar year of
    each day, integers) are aligned 1-D daily arrays. Each year's solid precipitation is
    annualised to 365.25 days from the days of that year present in the record, and the years
    are averaged weighted by those days: complete years count fully, and a year cut by the start
    or end of the record counts in proportion to its days instead of being extrapolated from one
    season. (This equals the record's total solid precipitation per day times 365.25.) A record
    without any solid precipitation gives ``SNOW_THRESHOLD_FLOOR_MM``, so the result is always
    > 0; no snow then ever accumulates, and the threshold has no effect.
    """
    precip = np.asarray(precipitation_mm, dtype=np.float64)
    temp = np.asarray(temperature_c, dtype=np.float64)
    year = np.asarray(years)
    if precip.ndim != 1 or temp.shape != precip.shape or year.shape != precip.shape:
        raise ValueError(
            "precipitation_mm, temperature_c and years must be 1-D arrays of the same length, "
            f"got {precip.shape}, {temp.shape} and {year.shape}"
        )
    if precip.size == 0:
        raise ValueError("snow_threshold_mm needs at least one day of forcing")
    if not np.issubdtype(year.dtype, np.integer):
        raise ValueError(f"years must hold integer calendar years, got dtype {year.dtype}")
    _check_precipitation(precip)
    _check_finite("temperature_c", temp)
    solid = solid_fraction(temp) * precip
    labels, index = np.unique(year, return_inverse=True)
    days = np.bincount(index, minlength=labels.size).astype(np.float64)
    yearly_solid = np.bincount(index, weights=solid, minlength=labels.size)
    annualised = yearly_solid / days * _DAYS_PER_YEAR
    mean_annual = float(np.sum(annualised * days) / np.sum(days))
    threshold = _THRESHOLD_SHARE_OF_ANNUAL_SNOW * mean_annual
    return threshold if threshold > SNOW_THRESHOLD_FLOOR_MM else SNOW_THRESHOLD_FLOOR_MM


@njit(cache=True)
def _cemaneige_kernel(solid, liquid_rain, temp, ctg, kf, g_threshold, g0, etg0):
    """The daily loop over members x days (equations in the module docstring).

    Takes the already split solid and liquid precipitation; returns the liquid water out (rain
    plus melt), the melt and the end-of-day snowpack (members x days), and the final snowpack
    and thermal state of each member.
    """
    members, days = solid.shape
    liquid_out = np.empty((members, days))
    melt_out = np.empty((members, days))
    g_out = np.empty((members, days))
    g_end = np.empty(members)
    etg_end = np.empty(members)
    for m in range(members):
        g = g0[m]
        etg = etg0[m]
        for t in range(days):
            tc = temp[m, t]
            g += solid[m, t]
            etg = min(0.0, ctg * etg + (1.0 - ctg) * tc)
            melt = 0.0
            if etg == 0.0 and tc > MELT_THRESHOLD_C:
                pot_melt = min(g, kf * (tc - MELT_THRESHOLD_C))
                g_ratio = min(g / g_threshold, 1.0)
                # min() only guards against rounding: analytically melt <= PotMelt <= G.
                melt = min(((1.0 - MIN_MELT_SPEED) * g_ratio + MIN_MELT_SPEED) * pot_melt, g)
                g -= melt
            liquid_out[m, t] = liquid_rain[m, t] + melt
            melt_out[m, t] = melt
            g_out[m, t] = g
        g_end[m] = g
        etg_end[m] = etg
    return liquid_out, melt_out, g_out, g_end, etg_end


def _prepare_snow_forcing(
    precipitation_mm: np.ndarray, temperature_c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    precip, temp = broadcast_daily(
        "precipitation_mm", precipitation_mm, "temperature_c", temperature_c
    )
    _check_precipitation(precip)
    _check_finite("temperature_c", temp)
    return precip, temp


def _prepare_snow_state(state: SnowState, members: int) -> SnowState:
    if state.members is None:
        return SnowState(
            np.full(members, float(state.snowpack_mm)),
            np.full(members, float(state.thermal_state_degc)),
        )
    if state.members != members:
        raise ValueError(f"snow state has {state.members} members, the forcing has {members}")
    return state


def run_cemaneige(
    precipitation_mm: np.ndarray,
    temperature_c: np.ndarray,
    params: CemaNeigeParams,
    g_threshold_mm: float,
    state: SnowState | None = None,
) -> SnowFluxes:
    """Run CemaNeige: split precipitation into snow and rain, accumulate and melt the snowpack.

    ``precipitation_mm`` (mm/day) is 1-D (days) or 2-D (members x days); ``temperature_c``
    (deg C) broadcasts against it (e.g. 1-D shared by all members). ``g_threshold_mm`` is the
    catchment's ``snow_threshold_mm``. A 2-D run starts every member from ``state`` (a single
    state is copied to all members; an ensemble state must have one state per member);
    ``state=None`` uses ``initial_snow_state()``.
    """
    precip, temp = _prepare_snow_forcing(precipitation_mm, temperature_c)
    _check_threshold(g_threshold_mm)
    single = precip.ndim == 1
    if single and state is not None and state.members is not None:
        raise ValueError("a 1-D forcing needs a single snow state, got an ensemble state")
    solid = solid_fraction(temp) * precip
    rain = precip - solid
    p2 = precip.reshape(1, -1) if single else precip
    s2 = np.ascontiguousarray(solid.reshape(p2.shape))
    r2 = np.ascontiguousarray(rain.reshape(p2.shape))
    t2 = np.ascontiguousarray(temp.reshape(p2.shape))
    start = _prepare_snow_state(state if state is not None else initial_snow_state(), p2.shape[0])
    liquid, melt, g_traj, g_end, etg_end = _cemaneige_kernel(
        s2,
        r2,
        t2,
        float(params.ctg),
        float(params.kf_mm_per_degc_day),
        float(g_threshold_mm),
        np.ascontiguousarray(start.snowpack_mm),
        np.ascontiguousarray(start.thermal_state_degc),
    )
    if single:
        return SnowFluxes(liquid[0], melt[0], s2[0], g_traj[0], SnowState(g_end[0], etg_end[0]))
    return SnowFluxes(liquid, melt, s2, g_traj, SnowState(g_end, etg_end))


@dataclass
class GR4JSnowState:
    """State of GR4J with CemaNeige: the GR4J stores and queues, and the snowpack.

    Both parts are single states, or ensemble states with the same number of members.
    """

    gr4j: GR4JState
    snow: SnowState

    def __post_init__(self) -> None:
        if self.gr4j.members != self.snow.members:
            raise ValueError(
                f"the GR4J state has {self.gr4j.members} members and the snow state "
                f"{self.snow.members}; both must be single states or have the same members"
            )

    @property
    def members(self) -> int | None:
        """Number of ensemble members, or None for a single state."""
        return self.gr4j.members

    def member(self, index: int) -> GR4JSnowState:
        """The state of one ensemble member, as a single state."""
        return GR4JSnowState(self.gr4j.member(index), self.snow.member(index))

    def copy(self) -> GR4JSnowState:
        """An independent copy."""
        return GR4JSnowState(self.gr4j.copy(), self.snow.copy())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict with the two parts under ``"gr4j"`` and ``"snow"``."""
        return {"gr4j": self.gr4j.to_dict(), "snow": self.snow.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GR4JSnowState:
        """Inverse of ``to_dict``."""
        return cls(GR4JState.from_dict(data["gr4j"]), SnowState.from_dict(data["snow"]))


def run_gr4j_snow(
    precipitation_mm: np.ndarray,
    temperature_c: np.ndarray,
    pet_mm: np.ndarray,
    params: GR4JParams,
    snow: CemaNeigeParams,
    g_threshold_mm: float,
    state: GR4JSnowState | None = None,
) -> tuple[np.ndarray, GR4JSnowState]:
    """Run CemaNeige, then GR4J on its liquid water: daily streamflow (mm/day) and final state.

    Forcing is 1-D (days) or 2-D (members x days); ``temperature_c`` and ``pet_mm`` broadcast
    against ``precipitation_mm`` as in ``run_gr4j``. ``state=None`` starts GR4J from
    ``initial_state(params)`` and the snowpack from ``initial_snow_state()``.
    """
    if state is None:
        state = GR4JSnowState(initial_state(params), initial_snow_state())
    fluxes = run_cemaneige(precipitation_mm, temperature_c, snow, g_threshold_mm, state.snow)
    q, gr4j_state = run_gr4j(fluxes.liquid_mm, pet_mm, params, state.gr4j)
    return q, GR4JSnowState(gr4j_state, fluxes.final_state)
