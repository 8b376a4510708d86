"""Calibration of GR4J with the CemaNeige snow routine (twinmesh.core.hydrology.calibration).

The acceptance criterion of the snow routine: calibrated on the real Fulda record 1980-1985 and
validated on 1986-1988, exactly as ``build_fulda_twin`` splits it, GR4J with snow reaches a
validation NSE of at least 0.82 (GR4J alone: about 0.78).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pytest

from twinmesh.core.demo.fulda import (
    CALIBRATION_YEARS,
    CATCHMENT_AREA_KM2,
    LATITUDE_DEG,
    VALIDATION_YEARS,
    load_fulda_record,
)
from twinmesh.core.hydrology.calibration import CalibrationResult, calibrate_gr4j
from twinmesh.core.hydrology.gr4j import PARAM_NAMES, GR4JParams
from twinmesh.core.hydrology.metrics import nse
from twinmesh.core.hydrology.pet import pet_oudin
from twinmesh.core.hydrology.snow import (
    SNOW_PARAM_BOUNDS,
    SNOW_PARAM_NAMES,
    CemaNeigeParams,
    run_gr4j_snow,
    snow_threshold_mm,
)

#: The smallest budget that reached the criterion from every seed tried: with 1500 runs the
#: validation NSE was >= 0.825 for all of 81 seeds (0..79 and 20260101; mean 0.855); with 1250
#: it fell below 0.82 for 8 of them. GR4J alone stays at 0.776 whatever the budget.
BUDGET = 1500
ACCEPTANCE_VALIDATION_NSE = 0.82
SEEDS = (0, 1, 20260101)


@dataclass(frozen=True)
class Fulda:
    precip_mm: np.ndarray
    temperature_c: np.ndarray
    pet_mm: np.ndarray
    q_obs_mm: np.ndarray
    years: np.ndarray
    periods: dict[str, Any]


@cache
def fulda() -> Fulda:
    """The Fulda record and the split of ``build_fulda_twin`` (warm-up from the first day)."""
    record = load_fulda_record()
    t = record.time
    pet = pet_oudin(record.temperature_c, t.day_of_year.to_numpy(), LATITUDE_DEG)
    years = t.year.to_numpy()
    cal = np.flatnonzero((years >= CALIBRATION_YEARS[0]) & (years <= CALIBRATION_YEARS[1]))
    val = np.flatnonzero((years >= VALIDATION_YEARS[0]) & (years <= VALIDATION_YEARS[1]))
    periods = {
        "warmup_days": int(cal[0]),
        "calibration": slice(int(cal[0]), int(cal[-1]) + 1),
        "validation": slice(int(val[0]), int(val[-1]) + 1),
    }
    return Fulda(
        record.precipitation_mm,
        record.temperature_c,
        pet,
        record.discharge_m3s * 86.4 / CATCHMENT_AREA_KM2,
        years,
        periods,
    )


@cache
def calibrated(seed: int, snow: bool) -> CalibrationResult:
    data = fulda()
    extra: dict[str, Any] = (
        {"temperature_c": data.temperature_c, "years": data.years} if snow else {}
    )
    return calibrate_gr4j(
        data.precip_mm,
        data.pet_mm,
        data.q_obs_mm,
        repetitions=BUDGET,
        seed=seed,
        **data.periods,
        **extra,
    )


# --- skill on the real record ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_snow_reaches_the_acceptance_nse_on_fulda_and_beats_gr4j_alone(seed: int) -> None:
    with_snow = calibrated(seed, snow=True)
    without = calibrated(seed, snow=False)
    assert with_snow.validation_nse >= ACCEPTANCE_VALIDATION_NSE
    assert with_snow.validation_nse > without.validation_nse
    assert with_snow.calibration_kge > without.calibration_kge  # the objective itself


def test_the_result_describes_the_snow_model_it_scored() -> None:
    data = fulda()
    result = calibrated(0, snow=True)
    assert result.snow is not None and result.g_threshold_mm is not None
    for name, (lo, hi) in SNOW_PARAM_BOUNDS.items():
        assert lo <= getattr(result.snow, name) <= hi
    assert result.params.within_bounds()
    cal = data.periods["calibration"]
    expected = snow_threshold_mm(data.precip_mm[cal], data.temperature_c[cal], data.years[cal])
    assert result.g_threshold_mm == expected
    # Re-running the reported model reproduces the reported score.
    q, _ = run_gr4j_snow(
        data.precip_mm,
        data.temperature_c,
        data.pet_mm,
        result.params,
        result.snow,
        result.g_threshold_mm,
    )
    val = data.periods["validation"]
    assert nse(q[val], data.q_obs_mm[val]) == pytest.approx(result.validation_nse, abs=1e-12)
    params = result.to_dict()["params"]
    assert list(params) == [*PARAM_NAMES, *SNOW_PARAM_NAMES, "g_threshold_mm"]
    assert params["ctg"] == result.snow.ctg
    assert params["g_threshold_mm"] == result.g_threshold_mm
    plain = calibrated(0, snow=False)
    assert plain.snow is None and plain.g_threshold_mm is None
    assert set(plain.to_dict()["params"]) == set(PARAM_NAMES)


# --- behaviour on a small synthetic record --------------------------------------------------------


PERIODS: dict[str, Any] = {
    "warmup_days": 365,
    "calibration": slice(365, 365 * 3),
    "validation": slice(365 * 3, None),
}


def synthetic_case() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Four years of forcing with snowy winters and the flow of a known GR4J + CemaNeige."""
    rng = np.random.default_rng(1)
    days = 365 * 4
    doy = np.arange(days) % 365
    precip = rng.gamma(0.6, 8.0, days) * (rng.random(days) < 0.45)
    temp = 5.0 + 10.0 * np.sin(2 * np.pi * (doy - 110) / 365) + rng.normal(0, 3.0, days)
    pet = np.clip(1.5 + 1.5 * np.sin(2 * np.pi * (doy - 100) / 365), 0, None)
    years = 2000 + np.arange(days) // 365
    cal = PERIODS["calibration"]
    g_threshold = snow_threshold_mm(precip[cal], temp[cal], years[cal])
    truth = GR4JParams(420.0, -0.8, 110.0, 2.2), CemaNeigeParams(0.5, 4.0)
    q, _ = run_gr4j_snow(precip, temp, pet, *truth, g_threshold)
    return precip, temp, pet, q, years


def test_calibration_with_snow_is_reproducible_quiet_and_leaves_global_rngs_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    precip, temp, pet, q, years = synthetic_case()
    kwargs: dict[str, Any] = {"temperature_c": temp, "years": years, "repetitions": 300}
    np.random.seed(5)
    random.seed(5)
    expected = (np.random.random(), random.random())
    np.random.seed(5)
    random.seed(5)
    first = calibrate_gr4j(precip, pet, q, seed=3, **PERIODS, **kwargs)
    assert (np.random.random(), random.random()) == expected
    assert first == calibrate_gr4j(precip, pet, q, seed=3, **PERIODS, **kwargs)
    assert first.snow != calibrate_gr4j(precip, pet, q, seed=4, **PERIODS, **kwargs).snow
    assert capsys.readouterr().out == ""


def test_a_given_snow_threshold_is_used_as_it_is() -> None:
    precip, temp, pet, q, _ = synthetic_case()
    result = calibrate_gr4j(
        precip, pet, q, temperature_c=temp, g_threshold_mm=60.0, repetitions=300, **PERIODS
    )
    assert result.g_threshold_mm == 60.0
    assert result.to_dict()["params"]["g_threshold_mm"] == 60.0


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("years without temperature", "only apply to the snow routine"),
        ("threshold without temperature", "only apply to the snow routine"),
        ("temperature without years", "needs years"),
        ("short temperature", "temperature_c must be a 1-D array"),
        ("NaN temperature", "temperature_c contains NaN"),
        ("short years", "years must be a 1-D array"),
        ("zero threshold", "g_threshold_mm must be a finite number > 0"),
        ("too small a budget", "at least 130 for 6 parameters"),
    ],
)
def test_bad_snow_inputs_are_rejected(case: str, message: str) -> None:
    precip, temp, pet, q, years = synthetic_case()
    cases: dict[str, dict[str, Any]] = {
        "years without temperature": {"years": years},
        "threshold without temperature": {"g_threshold_mm": 50.0},
        "temperature without years": {"temperature_c": temp},
        "short temperature": {"temperature_c": temp[:-1], "years": years},
        "NaN temperature": {"temperature_c": np.where(np.arange(temp.size) == 40, np.nan, temp)},
        "short years": {"temperature_c": temp, "years": years[:-1]},
        "zero threshold": {"temperature_c": temp, "g_threshold_mm": 0.0},
        "too small a budget": {"temperature_c": temp, "years": years, "repetitions": 120},
    }
    kwargs = cases[case]
    kwargs.setdefault("repetitions", 200)
    with pytest.raises(ValueError, match=message):
        calibrate_gr4j(precip, pet, q, **PERIODS, **kwargs)


def test_snow_calibration_fits_snowy_synthetic_flow_that_gr4j_alone_cannot() -> None:
    precip, temp, pet, q, years = synthetic_case()
    with_snow = calibrate_gr4j(
        precip, pet, q, temperature_c=temp, years=years, repetitions=800, **PERIODS
    )
    without = calibrate_gr4j(precip, pet, q, repetitions=800, **PERIODS)
    # Two fifths of the precipitation here falls as snow: without a snowpack GR4J sends it
    # to the river months early and is no better than the mean flow.
    assert with_snow.validation_nse > 0.9
    assert without.validation_nse < 0.5
