"""Calibration of GR4J (optionally with the CemaNeige snow routine) against observed streamflow.

Why: GR4J's four parameters are catchment-specific and must be fitted to a gauge record before
the twin can simulate or forecast that catchment; a split-sample test (calibrate on one period,
validate on another) tells the user how much to trust the result. Where winters bring snow,
the two CemaNeige parameters are fitted together with GR4J's.

What: ``calibrate_gr4j`` searches ``PARAM_BOUNDS`` (and, given a temperature record,
``SNOW_PARAM_BOUNDS`` too) with the Shuffled Complex Evolution algorithm (Duan et al., 1994) as
implemented by spotpy (``spotpy.algorithms.sceua``), maximising the Kling-Gupta efficiency on the
calibration period. The model always runs from the first day of the arrays from
``initial_state`` (and a snow-free ``initial_snow_state``); the first ``warmup_days`` are never
scored, so the arbitrary initial state does not bias the fit.

spotpy prints its progress to stdout and seeds numpy's and Python's global random generators.
The calibration silences that printing (stdout is redirected for the duration of the search,
except while the ``progress`` callback runs; other threads printing meanwhile are silenced too)
and restores both global generators afterwards, so the caller's random streams are unaffected.
"""

from __future__ import annotations

import contextlib
import io
import random
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from twinmesh.core.hydrology.gr4j import PARAM_BOUNDS, PARAM_NAMES, GR4JParams, run_gr4j
from twinmesh.core.hydrology.metrics import kge, nse
from twinmesh.core.hydrology.snow import (
    SNOW_PARAM_BOUNDS,
    SNOW_PARAM_NAMES,
    CemaNeigeParams,
    run_gr4j_snow,
    snow_threshold_mm,
)

__all__ = ["CalibrationResult", "calibrate_gr4j"]

# Number of SCE-UA complexes. spotpy's default (20 complexes of 9 points) spends a small budget
# on the initial population and converges slowly; on the Fulda catchment 4-5 complexes reached
# the same optimum from every seed with 3000 runs. Larger budgets buy more complexes (a more
# global search), one per 600 runs for GR4J's 4 parameters.
# A complex holds 2n + 1 points for n parameters, so for the 6 parameters of GR4J + CemaNeige a
# complex costs 13/9 as much per evolution loop and the runs per complex scale with it. The
# snow model also needs one complex more: on Fulda (31 seeds) 4 complexes of 13 points left
# 2 seeds stuck at a local optimum (calibration KGE 0.88, validation NSE 0.74) even with 2000
# runs, 6 complexes still missed validation NSE 0.82 for 3 seeds with 1500 runs, and
# 5 complexes reached it from every seed with 1500 runs (81 of 81 seeds, all >= 0.825).
_MIN_COMPLEXES = 4
_MAX_COMPLEXES = 10
_RUNS_PER_COMPLEX = 600
# Smallest budget accepted: the initial population of the smallest setting (4 complexes of
# 2 * 4 + 1 points) plus one evolution loop; more for more parameters (``_min_repetitions``).
_MIN_REPETITIONS = 100


@dataclass(frozen=True)
class CalibrationResult:
    """Best parameters found and their skill on the calibration and validation periods.

    ``repetitions`` is the budget that was asked for, as spotpy counts it (its counter also
    counts each point SCE-UA re-records after evolving a complex, and the search may stop
    earlier on convergence); ``evaluations`` is the number of model runs actually made, about
    two thirds of the budget. ``snow`` and ``g_threshold_mm`` are set when the model was
    calibrated with the CemaNeige snow routine (``run_gr4j_snow``), None for plain GR4J.
    """

    params: GR4JParams
    calibration_kge: float
    calibration_nse: float
    validation_kge: float
    validation_nse: float
    repetitions: int
    evaluations: int
    seed: int
    snow: CemaNeigeParams | None = None
    g_threshold_mm: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict with all parameters (GR4J, snow when set) under ``"params"``."""
        data = asdict(self)
        del data["snow"], data["g_threshold_mm"]
        params = dict(zip(PARAM_NAMES, self.params.as_array().tolist(), strict=True))
        if self.snow is not None:
            params.update(zip(SNOW_PARAM_NAMES, self.snow.as_array().tolist(), strict=True))
        if self.g_threshold_mm is not None:
            params["g_threshold_mm"] = float(self.g_threshold_mm)
        data["params"] = params
        return data


def _resolve_period(period: slice, n: int, warmup_days: int, name: str) -> tuple[int, int]:
    if period.step not in (None, 1):
        raise ValueError(f"{name} must be a contiguous slice (step 1), got step {period.step}")
    start, stop, _ = period.indices(n)
    if stop - start < 2:
        raise ValueError(f"{name} {period} covers fewer than 2 of the {n} days")
    if start < warmup_days:
        raise ValueError(
            f"{name} starts on day {start}, inside the {warmup_days}-day warm-up period"
        )
    return start, stop


def _complexes_for(repetitions: int, n_params: int = len(PARAM_NAMES)) -> int:
    gr4j_params = len(PARAM_NAMES)
    runs_per_complex = _RUNS_PER_COMPLEX * (2 * n_params + 1) / (2 * gr4j_params + 1)
    least = _MIN_COMPLEXES + max(0, n_params - gr4j_params) // 2
    return int(np.clip(int(repetitions // runs_per_complex), least, _MAX_COMPLEXES))


def _min_repetitions(n_params: int) -> int:
    least = _complexes_for(0, n_params)
    return max(_MIN_REPETITIONS, 2 * least * (2 * n_params + 1))


class _SpotSetup:
    """The spotpy "setup" protocol: parameters, simulation, evaluation, objective function."""

    def __init__(
        self,
        bounds: Mapping[str, tuple[float, float]],
        simulate: Callable[[np.ndarray], np.ndarray],
        obs: np.ndarray,
        start: int,
        on_evaluation: Callable[[], None],
    ) -> None:
        import spotpy

        self._spotpy = spotpy
        self._simulate = simulate
        self._obs = obs
        self._start = start
        self._on_evaluation = on_evaluation
        self._params = [
            spotpy.parameter.Uniform(
                name,
                low=lo,
                high=hi,
                minbound=lo,
                maxbound=hi,
                optguess=0.5 * (lo + hi),
                step=0.1 * (hi - lo),
            )
            for name, (lo, hi) in bounds.items()
        ]

    def parameters(self) -> np.ndarray:
        return self._spotpy.parameter.generate(self._params)

    def simulation(self, vector: Any) -> np.ndarray:
        self._on_evaluation()
        return self._simulate(np.asarray(vector, dtype=np.float64))[self._start :]

    def evaluation(self) -> np.ndarray:
        return self._obs

    def objectivefunction(
        self, simulation: np.ndarray, evaluation: np.ndarray, params: Any = None
    ) -> float:
        # SCE-UA minimises.
        return -kge(simulation, evaluation)


def _check_snow_inputs(
    n: int,
    temperature_c: np.ndarray | None,
    years: np.ndarray | None,
    g_threshold_mm: float | None,
) -> np.ndarray | None:
    """The temperature record as float64 (None without snow), after checking the snow inputs."""
    if temperature_c is None:
        if years is not None or g_threshold_mm is not None:
            raise ValueError(
                "years and g_threshold_mm only apply to the snow routine: pass temperature_c "
                "too, or leave them out to calibrate GR4J without snow"
            )
        return None
    temp = np.asarray(temperature_c, dtype=np.float64)
    if temp.shape != (n,):
        raise ValueError(
            f"temperature_c must be a 1-D array of the {n} days of precip_mm, got shape "
            f"{temp.shape}"
        )
    if not np.all(np.isfinite(temp)):
        raise ValueError("temperature_c contains NaN or infinite values; fill gaps first")
    if g_threshold_mm is None:
        if years is None:
            raise ValueError(
                "calibrating with temperature_c needs years (the calendar year of each day) "
                "to compute g_threshold_mm, or g_threshold_mm itself"
            )
        if np.shape(years) != (n,):
            raise ValueError(
                f"years must be a 1-D array of the {n} days of precip_mm, got shape "
                f"{np.shape(years)}"
            )
    elif not (np.isfinite(g_threshold_mm) and g_threshold_mm > 0):
        raise ValueError(f"g_threshold_mm must be a finite number > 0, got {g_threshold_mm}")
    return temp


def calibrate_gr4j(
    precip_mm: np.ndarray,
    pet_mm: np.ndarray,
    q_obs_mm: np.ndarray,
    *,
    warmup_days: int,
    calibration: slice,
    validation: slice,
    repetitions: int = 3000,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    temperature_c: np.ndarray | None = None,
    years: np.ndarray | None = None,
    g_threshold_mm: float | None = None,
) -> CalibrationResult:
    """Calibrate GR4J by maximising KGE on ``calibration``; score it on both periods.

    ``precip_mm``, ``pet_mm`` (mm/day) and ``q_obs_mm`` (observed streamflow, mm/day, NaN for
    gaps) are aligned daily 1-D arrays; ``calibration`` and ``validation`` are slices into them
    that must start after ``warmup_days``. ``repetitions`` is spotpy's budget (at least 100, or
    130 with snow; see ``CalibrationResult``). The same ``seed`` gives the same result.
    ``progress(done, total)`` is called now and then during the search (``done`` counts towards
    ``total == repetitions``) and once with ``done == total`` at the end.

    With ``temperature_c`` (daily mean air temperature, deg C, aligned with the forcing) the
    model is GR4J with the CemaNeige snow routine (``run_gr4j_snow``) and the search covers the
    4 GR4J and the 2 CemaNeige parameters. Its catchment constant ``g_threshold_mm`` is, unless
    given, ``snow_threshold_mm`` of the calibration period, which needs ``years`` (the calendar
    year of each day).
    """
    precip = np.asarray(precip_mm, dtype=np.float64)
    pet = np.asarray(pet_mm, dtype=np.float64)
    obs = np.asarray(q_obs_mm, dtype=np.float64)
    if precip.ndim != 1 or precip.shape != pet.shape or precip.shape != obs.shape:
        raise ValueError(
            "precip_mm, pet_mm and q_obs_mm must be 1-D arrays of the same length, got "
            f"{precip.shape}, {pet.shape} and {obs.shape}"
        )
    n = precip.size
    temp = _check_snow_inputs(n, temperature_c, years, g_threshold_mm)
    bounds = dict(PARAM_BOUNDS) if temp is None else {**PARAM_BOUNDS, **SNOW_PARAM_BOUNDS}
    n_params = len(bounds)
    if not 0 <= warmup_days < n:
        raise ValueError(f"warmup_days must lie in 0..{n - 1}, got {warmup_days}")
    min_repetitions = _min_repetitions(n_params)
    if repetitions < min_repetitions:
        raise ValueError(
            f"repetitions must be at least {min_repetitions} for {n_params} parameters, "
            f"got {repetitions}"
        )
    cal_start, cal_stop = _resolve_period(calibration, n, warmup_days, "calibration")
    val_start, val_stop = _resolve_period(validation, n, warmup_days, "validation")
    threshold_mm = g_threshold_mm
    if temp is not None and threshold_mm is None:
        part = slice(cal_start, cal_stop)
        threshold_mm = snow_threshold_mm(precip[part], temp[part], np.asarray(years)[part])

    def simulate(vector: np.ndarray, stop: int = n) -> np.ndarray:
        params = GR4JParams.from_array(vector[:4])
        if temp is None or threshold_mm is None:
            return run_gr4j(precip[:stop], pet[:stop], params)[0]
        snow = CemaNeigeParams.from_array(vector[4:])
        q, _ = run_gr4j_snow(precip[:stop], temp[:stop], pet[:stop], params, snow, threshold_mm)
        return q

    # Fail early on unusable forcing or observations rather than inside the optimiser.
    guess = np.array([0.5 * (lo + hi) for lo, hi in bounds.values()])
    guess[:4] = [300.0, 0.0, 100.0, 2.0]
    q_check = simulate(guess)
    kge(q_check[cal_start:cal_stop], obs[cal_start:cal_stop])
    nse(q_check[val_start:val_stop], obs[val_start:val_stop])

    real_stdout = sys.stdout
    step = max(1, repetitions // 100)
    evaluations = 0
    sampler: Any = None

    def report(done: int) -> None:
        if progress is not None:
            with contextlib.redirect_stdout(real_stdout):
                progress(min(done, repetitions), repetitions)

    def on_evaluation() -> None:
        # spotpy's budget counter (status.rep) also counts re-recorded points, so it runs ahead
        # of the number of model runs; progress follows the budget, the result reports both.
        nonlocal evaluations
        evaluations += 1
        if evaluations % step == 0 and sampler is not None:
            report(sampler.status.rep)

    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        import spotpy

        np.random.seed(seed)
        random.seed(seed)
        setup = _SpotSetup(
            bounds,
            lambda vector: simulate(vector, cal_stop),
            obs[cal_start:cal_stop],
            cal_start,
            on_evaluation,
        )
        with contextlib.redirect_stdout(io.StringIO()):
            sampler = spotpy.algorithms.sceua(
                setup,
                dbname="gr4j_sceua",
                dbformat="ram",
                save_sim=False,
                random_state=seed,
            )
            sampler.sample(repetitions, ngs=_complexes_for(repetitions, n_params))
        best = np.asarray(sampler.status.params_min, dtype=np.float64)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    report(repetitions)

    q_sim = simulate(best)
    cal_sim, cal_obs = q_sim[cal_start:cal_stop], obs[cal_start:cal_stop]
    val_sim, val_obs = q_sim[val_start:val_stop], obs[val_start:val_stop]
    return CalibrationResult(
        params=GR4JParams.from_array(best[:4]),
        calibration_kge=kge(cal_sim, cal_obs),
        calibration_nse=nse(cal_sim, cal_obs),
        validation_kge=kge(val_sim, val_obs),
        validation_nse=nse(val_sim, val_obs),
        repetitions=repetitions,
        evaluations=evaluations,
        seed=seed,
        snow=None if temp is None else CemaNeigeParams.from_array(best[4:]),
        g_threshold_mm=threshold_mm,
    )
