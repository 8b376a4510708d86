"""Unit tests of the hydrology helpers: skill scores, flood return levels, SPI, Oudin PET."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from twinmesh.core.hydrology.drought import DROUGHT_LEVELS, drought_level, spi_monthly
from twinmesh.core.hydrology.extremes import annual_maxima, fit_gumbel, return_levels
from twinmesh.core.hydrology.metrics import kge, kge_components, nse
from twinmesh.core.hydrology.pet import extraterrestrial_radiation_mj_m2_day, pet_oudin

# --- NSE and KGE --------------------------------------------------------------------------------

OBS = np.array([1.0, 2.0, 3.0, 4.0, 8.0, 5.0, 2.5])


def test_perfect_simulation_scores_one() -> None:
    assert nse(OBS, OBS) == pytest.approx(1.0)
    assert kge(OBS, OBS) == pytest.approx(1.0)


def test_mean_of_observations_gives_nse_zero_and_kge_one_minus_sqrt2() -> None:
    sim = np.full_like(OBS, OBS.mean())
    assert nse(sim, OBS) == pytest.approx(0.0, abs=1e-12)
    assert kge(sim, OBS) == pytest.approx(1.0 - math.sqrt(2.0))


def test_kge_of_a_case_computed_by_hand() -> None:
    obs = np.array([1.0, 2.0, 3.0, 4.0])
    sim = np.array([2.0, 2.0, 4.0, 4.0])
    # mean 2.5 vs 3 -> beta = 1.2; sd sqrt(1.25) vs 1 -> alpha = 2/sqrt(5); cov = 1 -> r = 2/sqrt(5)
    r, alpha, beta = kge_components(sim, obs)
    assert (r, alpha, beta) == pytest.approx((2 / math.sqrt(5), 2 / math.sqrt(5), 1.2))
    expected = 1.0 - math.sqrt(2 * (2 / math.sqrt(5) - 1) ** 2 + 0.2**2)
    assert kge(sim, obs) == pytest.approx(expected)
    assert expected == pytest.approx(0.7504, abs=1e-4)
    # NSE by hand: SSE = 1 + 0 + 1 + 0 = 2, SST = 5
    assert nse(sim, obs) == pytest.approx(1 - 2 / 5)


def test_doubling_the_flow_scores_kge_one_minus_sqrt2() -> None:
    assert kge(2 * OBS, OBS) == pytest.approx(1.0 - math.sqrt(2.0))


def test_nan_observations_are_ignored() -> None:
    obs = OBS.copy()
    obs[[1, 4]] = np.nan
    sim = OBS * 1.1 + 0.3
    keep = ~np.isnan(obs)
    assert nse(sim, obs) == pytest.approx(nse(sim[keep], obs[keep]))
    assert kge(sim, obs) == pytest.approx(kge(sim[keep], obs[keep]))


@pytest.mark.parametrize("score", [nse, kge])
def test_scores_reject_unusable_input(score) -> None:
    with pytest.raises(ValueError, match="same length"):
        score(OBS[:-1], OBS)
    with pytest.raises(ValueError, match="at least 2"):
        score(OBS[:3], np.array([1.0, np.nan, np.nan]))
    with pytest.raises(ValueError, match="constant"):
        score(OBS[:3], np.array([2.0, 2.0, 2.0]))


@settings(max_examples=100, deadline=None)
@given(
    obs=hnp.arrays(np.float64, st.integers(3, 50), elements=st.floats(0.1, 100.0)),
    noise=st.floats(0.0, 10.0),
)
def test_property_scores_never_exceed_one(obs: np.ndarray, noise: float) -> None:
    if np.ptp(obs) < 1e-6:
        return
    sim = obs + noise * np.sin(np.arange(obs.size))
    assert nse(sim, obs) <= 1.0 + 1e-12
    assert kge(sim, obs) <= 1.0 + 1e-12


# --- Gumbel return levels -----------------------------------------------------------------------


def test_gumbel_return_levels_match_the_analytical_quantiles() -> None:
    mu, beta = 250.0, 60.0
    sample = np.random.default_rng(2024).gumbel(mu, beta, size=20000)
    levels = return_levels(sample)
    assert list(levels) == [2, 5, 20]
    for period, level in levels.items():
        analytical = mu - beta * math.log(-math.log(1 - 1 / period))
        assert level == pytest.approx(analytical, rel=0.02)
    assert levels[2] < levels[5] < levels[20]
    fit = fit_gumbel(sample)
    assert fit.location == pytest.approx(mu, rel=0.02)
    assert fit.scale == pytest.approx(beta, rel=0.03)


def test_return_levels_need_three_years() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        return_levels(np.array([10.0, 12.0]))
    with pytest.raises(ValueError, match="> 1"):
        return_levels(np.array([10.0, 12.0, 15.0]), periods=(1,))


def test_annual_maxima_keep_complete_years_only() -> None:
    times = np.arange(np.datetime64("2001-03-01"), np.datetime64("2006-01-01"))
    values = np.ones(times.size)
    peaks = {2002: 7.0, 2003: 3.0, 2004: 9.0, 2005: 4.0}
    for year, peak in peaks.items():
        values[np.flatnonzero(times == np.datetime64(f"{year}-06-15"))] = peak
    values[np.flatnonzero(times == np.datetime64("2001-07-01"))] = 100.0  # incomplete year
    np.testing.assert_array_equal(annual_maxima(values, times), list(peaks.values()))
    values[np.flatnonzero(times == np.datetime64("2003-02-10"))] = np.nan  # gap drops 2003
    np.testing.assert_array_equal(annual_maxima(values, times), [7.0, 9.0, 4.0])
    missing_day = np.flatnonzero(times == np.datetime64("2004-02-01"))
    gappy = np.delete(np.arange(times.size), missing_day)  # a missing day drops its year too
    np.testing.assert_array_equal(annual_maxima(values[gappy], times[gappy]), [7.0, 4.0])


def test_annual_maxima_reject_non_datetime_times() -> None:
    with pytest.raises(ValueError, match="datetime64"):
        annual_maxima(np.ones(3), np.arange(3))


# --- SPI drought --------------------------------------------------------------------------------


# The dry spell makes the gamma fit of a few calendar months poor, which climate_indices reports.
poor_fit_expected = pytest.mark.filterwarnings(
    "ignore::climate_indices.exceptions.GoodnessOfFitWarning"
)


def monthly_precip_with_dry_spell() -> tuple[np.ndarray, slice]:
    rng = np.random.default_rng(7)
    seasonal = 60 + 25 * np.sin(2 * np.pi * np.arange(12) / 12)
    precip = rng.gamma(8.0, np.tile(seasonal, 30) / 8.0)
    dry = slice(12 * 20 + 4, 12 * 20 + 10)  # May-October of the 21st year
    precip[dry] *= 0.15
    return precip, dry


@poor_fit_expected
def test_spi_is_at_most_minus_one_in_a_deliberate_dry_spell() -> None:
    precip, dry = monthly_precip_with_dry_spell()
    spi = spi_monthly(precip, first_year=1991, scale_months=3)
    assert spi.shape == precip.shape
    assert np.isnan(spi[:2]).all() and not np.isnan(spi[2:]).any()
    # once the 3-month window lies inside the spell
    assert (spi[dry.start + 2 : dry.stop] <= -1.0).all()
    assert np.nanmean(spi) == pytest.approx(0.0, abs=0.15)
    assert drought_level(float(spi[dry.stop - 1])) in DROUGHT_LEVELS[1:]


@poor_fit_expected
def test_spi_with_a_calibration_period_and_input_checks() -> None:
    precip, dry = monthly_precip_with_dry_spell()
    spi = spi_monthly(precip, 1991, scale_months=1, calibration_years=(1991, 2020))
    assert (spi[dry] < -1.0).all()
    with pytest.raises(ValueError, match="calibration_years"):
        spi_monthly(precip, 1991, calibration_years=(1980, 2000))
    with pytest.raises(ValueError, match="negative"):
        spi_monthly(-precip, 1991)
    with pytest.raises(ValueError, match="scale_months"):
        spi_monthly(precip, 1991, scale_months=0)


@poor_fit_expected
def test_spi_leaves_the_root_logger_alone() -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    precip, _ = monthly_precip_with_dry_spell()
    spi_monthly(precip, 1991)
    assert (list(root.handlers), root.level) == before


@pytest.mark.parametrize(
    ("spi", "level"),
    [
        (1.2, "none"),
        (-0.99, "none"),
        (-1.0, "moderate"),
        (-1.49, "moderate"),
        (-1.5, "severe"),
        (-1.99, "severe"),
        (-2.0, "extreme"),
        (-3.09, "extreme"),
    ],
)
def test_drought_level_boundaries(spi: float, level: str) -> None:
    assert drought_level(spi) == level


def test_drought_levels_are_ordered_and_nan_is_rejected() -> None:
    assert DROUGHT_LEVELS == ("none", "moderate", "severe", "extreme")
    with pytest.raises(ValueError):
        drought_level(float("nan"))


# --- Oudin PET ----------------------------------------------------------------------------------


def test_extraterrestrial_radiation_matches_fao56_example_8() -> None:
    # FAO-56 example 8: 20 deg S on 3 September (day 246), Ra = 32.2 MJ m-2 day-1.
    assert float(extraterrestrial_radiation_mj_m2_day(246, -20.0)) == pytest.approx(32.2, abs=0.1)


def test_oudin_pet_is_zero_at_or_below_minus_five_degrees() -> None:
    temp = np.array([-20.0, -5.0, -5.0, -4.0])
    pet = pet_oudin(temp, np.array([1, 180, 200, 180]), 50.0)
    assert pet[:3].tolist() == [0.0, 0.0, 0.0]
    assert pet[3] > 0.0


def test_oudin_pet_is_higher_in_july_than_january_at_50n() -> None:
    pet = pet_oudin(np.array([10.0, 10.0]), np.array([15, 196]), 50.0)
    assert pet[1] > 3 * pet[0] > 0.0


def test_oudin_pet_formula_value() -> None:
    ra = float(extraterrestrial_radiation_mj_m2_day(196, 50.9))
    expected = ra / (2.45 * 1000.0) * 1000.0 * (18.0 + 5.0) / 100.0
    assert float(pet_oudin(np.array([18.0]), np.array([196]), 50.9)[0]) == pytest.approx(expected)
    assert 3.0 < expected < 5.0


def test_oudin_pet_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError):
        pet_oudin(np.array([10.0]), np.array([400]), 50.0)
    with pytest.raises(ValueError):
        pet_oudin(np.array([10.0]), np.array([100]), 95.0)
