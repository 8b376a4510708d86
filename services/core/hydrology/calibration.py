"""Calibration of GR4J against observed streamflow with SCE-UA.

Why: GR4J's four parameters are catchment-specific and must be fitted to a gauge record before
the twin can simulate or forecast that catchment; a split-sample test (calibrate on one period,
validate on another) tells the user how much to trust the result.

What: ``calibrate_gr4j`` searches ``PARAM_BOUNDS`` with the Shuffled Complex Evolution algorithm
(Duan et al., 1994) as implemented by spotpy (``spotpy.algorithms.sceua``), maximising the
Kling-Gupta efficiency on the calibration period. The model always runs from the first day of the
arrays from ``initial_state``; the first ``warmup_days`` are never scored, so the arbitrary
initial state does not bias the fit.

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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from twinmesh.core.hydrology.gr4j import PARAM_BOUNDS, PARAM_NAMES, GR4JParams, run_gr4j
from twinmesh.core.hydrology.metrics import kge, nse

__all__ = ["CalibrationResult", "calibrate_gr4j"]

# Number of SCE-UA complexes. spotpy's default (20 complexes of 9 points) spends a small budget
# on the initial population and converges slowly; on the Fulda catchment 4-5 complexes reached
# the same optimum from every seed with 3000 runs. Larger budgets buy more complexes (a more
# global search), one per 600 runs.
_MIN_COMPLEXES = 4
_MAX_COMPLEXES = 10
_RUNS_PER_COMPLEX = 600
# Smallest budget accepted: the initial population of the smallest setting (4 complexes of
# 2 * 4 + 1 points) plus one evolution loop.
_MIN_REPETITIONS = 100


@dataclass(frozen=True)
class CalibrationResult:
    """Best parameters found and their skill on the calibration and validation periods.

    ``repetitions`` is the budget that was asked for, as spotpy counts it (its counter also
    counts each point SCE-UA re-records after evolving a complex, and the search may stop
    earlier on convergence); ``evaluations`` is the number of model runs actually made, about
    two thirds of the budget.
    """

    params: GR4JParams
    calibration_kge: float
    calibration_nse: float
    validation_kge: float
    validation_nse: float
    repetitions: int
    evaluations: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict with the parameters under ``"params"``."""
        data = asdict(self)
        data["params"] = dict(zip(PARAM_NAMES, self.params.as_array().tolist(), strict=True))
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


def _complexes_for(repetitions: int) -> int:
    return int(np.clip(repetitions // _RUNS_PER_COMPLEX, _MIN_COMPLEXES, _MAX_COMPLEXES))


class _SpotSetup:
    """The spotpy "setup" protocol: parameters, simulation, evaluation, objective function."""

    def __init__(
        self,
        precip: np.ndarray,
        pet: np.ndarray,
        obs: np.ndarray,
        start: int,
        on_evaluation: Callable[[], None],
    ) -> None:
        import spotpy

        self._spotpy = spotpy
        self._precip = precip
        self._pet = pet
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
            for name, (lo, hi) in PARAM_BOUNDS.items()
        ]

    def parameters(self) -> np.ndarray:
        return self._spotpy.parameter.generate(self._params)

    def simulation(self, vector: Any) -> np.ndarray:
        self._on_evaluation()
        q, _ = run_gr4j(self._precip, self._pet, GR4JParams.from_array(list(vector)))
        return q[self._start :]

    def evaluation(self) -> np.ndarray:
        return self._obs

    def objectivefunction(
        self, simulation: np.ndarray, evaluation: np.ndarray, params: Any = None
    ) -> float:
        # SCE-UA minimises.
        return -kge(simulation, evaluation)


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
) -> CalibrationResult:
    """Calibrate GR4J by maximising KGE on ``calibration``; score it on both periods.

    ``precip_mm``, ``pet_mm`` (mm/day) and ``q_obs_mm`` (observed streamflow, mm/day, NaN for
    gaps) are aligned daily 1-D arrays; ``calibration`` and ``validation`` are slices into them
    that must start after ``warmup_days``. ``repetitions`` is spotpy's budget (at least 100;
    see ``CalibrationResult``). The same ``seed`` gives the same result.
    ``progress(done, total)`` is called now and then during the search (``done`` counts towards
    ``total == repetitions``) and once with ``done == total`` at the end.
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
    if not 0 <= warmup_days < n:
        raise ValueError(f"warmup_days must lie in 0..{n - 1}, got {warmup_days}")
    if repetitions < _MIN_REPETITIONS:
        raise ValueError(f"repetitions must be at least {_MIN_REPETITIONS}, got {repetitions}")
    cal_start, cal_stop = _resolve_period(calibration, n, warmup_days, "calibration")
    val_start, val_stop = _resolve_period(validation, n, warmup_days, "validation")
    # Fail early on unusable forcing or observations rather than inside the optimiser.
    q_check, _ = run_gr4j(precip, pet, GR4JParams.from_array([300.0, 0.0, 100.0, 2.0]))
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
            precip[:cal_stop], pet[:cal_stop], obs[cal_start:cal_stop], cal_start, on_evaluation
        )
        with contextlib.redirect_stdout(io.StringIO()):
            sampler = spotpy.algorithms.sceua(
                setup,
                dbname="gr4j_sceua",
                dbformat="ram",
                save_sim=False,
                random_state=seed,
            )
            sampler.sample(repetitions, ngs=_complexes_for(repetitions))
        best = GR4JParams.from_array(sampler.status.params_min)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    report(repetitions)

    q_sim, _ = run_gr4j(precip, pet, best)
    cal_sim, cal_obs = q_sim[cal_start:cal_stop], obs[cal_start:cal_stop]
    val_sim, val_obs = q_sim[val_start:val_stop], obs[val_start:val_stop]
    return CalibrationResult(
        params=best,
        calibration_kge=kge(cal_sim, cal_obs),
        calibration_nse=nse(cal_sim, cal_obs),
        validation_kge=kge(val_sim, val_obs),
        validation_nse=nse(val_sim, val_obs),
        repetitions=repetitions,
        evaluations=evaluations,
        seed=seed,
    )
