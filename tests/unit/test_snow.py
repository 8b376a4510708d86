"""Unit tests of the CemaNeige snow routine and GR4J with snow (twinmesh.core.hydrology.snow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinmesh.core.hydrology.gr4j import GR4JParams, GR4JState, initial_state, run_gr4j
from twinmesh.core.hydrology.snow import (
    MELT_THRESHOLD_C,
    MIN_MELT_SPEED,
    RAIN_SNOW_T_HIGH_C,
    RAIN_SNOW_T_LOW_C,
    SNOW_PARAM_BOUNDS,
    SNOW_PARAM_NAMES,
    SNOW_THRESHOLD_FLOOR_MM,
    CemaNeigeParams,
    GR4JSnowState,
    SnowState,
    initial_snow_state,
    run_cemaneige,
    run_gr4j_snow,
    snow_threshold_mm,
    solid_fraction,
)

GR4J = GR4JParams(x1_mm=350.0, x2_mm=-1.2, x3_mm=90.0, x4_days=1.7)
SNOW = CemaNeigeParams(ctg=0.6, kf_mm_per_degc_day=3.5)
G_THRESHOLD_MM = 80.0


def random_forcing(days: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intermittent gamma-distributed precipitation (mm/day), a seasonal temperature (deg C)
    with cold winters and day-to-day noise, and a seasonal PET (mm/day)."""
    rng = np.random.default_rng(seed)
    precip = rng.gamma(0.6, 8.0, days) * (rng.random(days) < 0.45)
    doy = np.arange(days) % 365
    temp = 6.0 + 10.0 * np.sin(2 * np.pi * (doy - 110) / 365) + rng.normal(0, 3.0, days)
    pet = np.clip(
        2.2 + 1.8 * np.sin(2 * np.pi * (doy - 100) / 365) + rng.normal(0, 0.3, days), 0, None
    )
    return precip, temp, pet


def pack(snowpack_mm: float, thermal_state_degc: float) -> SnowState:
    """A single snow state from two numbers."""
    return SnowState(np.asarray(snowpack_mm), np.asarray(thermal_state_degc))


def reference_cemaneige(
    precip: np.ndarray,
    temp: np.ndarray,
    ctg: float,
    kf: float,
    g_threshold: float,
    g: float = 0.0,
    etg: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Straight transcription of the published equations, one day at a time in plain Python.

    Returns the liquid water out, the melt, and the final snowpack and thermal state.
    """
    liquid, melt_out = [], []
    for p, t in zip(precip.tolist(), temp.tolist(), strict=True):
        if t <= -1.0:
            fsol = 1.0
        elif t >= 3.0:
            fsol = 0.0
        else:
            fsol = 1.0 - (t - (-1.0)) / (3.0 - (-1.0))
        psol = fsol * p
        pliq = p - psol
        g = g + psol
        etg = min(0.0, ctg * etg + (1.0 - ctg) * t)
        pot_melt = min(g, kf * (t - 0.0)) if (etg == 0.0 and t > 0.0) else 0.0
        g_ratio = min(g / g_threshold, 1.0)
        melt = (0.9 * g_ratio + 0.1) * pot_melt
        g = g - melt
        liquid.append(pliq + melt)
        melt_out.append(melt)
    return np.array(liquid), np.array(melt_out), g, etg


# --- parameters, constants and state ------------------------------------------------------------


def test_constants_and_param_names_are_the_published_ones() -> None:
    assert SNOW_PARAM_NAMES == ("ctg", "kf_mm_per_degc_day")
    assert list(SNOW_PARAM_BOUNDS) == list(SNOW_PARAM_NAMES)
    assert SNOW_PARAM_BOUNDS["ctg"] == (0.0, 1.0)
    assert SNOW_PARAM_BOUNDS["kf_mm_per_degc_day"] == (0.0, 10.0)
    assert (RAIN_SNOW_T_LOW_C, RAIN_SNOW_T_HIGH_C) == (-1.0, 3.0)
    assert MELT_THRESHOLD_C == 0.0 and MIN_MELT_SPEED == 0.1


def test_params_round_trip_through_array() -> None:
    assert SNOW.as_array().tolist() == [0.6, 3.5]
    assert CemaNeigeParams.from_array(SNOW.as_array()) == SNOW
    with pytest.raises(ValueError, match="2 parameters"):
        CemaNeigeParams.from_array([0.5, 1.0, 2.0])


@pytest.mark.parametrize(
    ("ctg", "kf", "message"),
    [
        (1.5, 3.0, r"ctg must lie in \[0, 1\]"),
        (-0.1, 3.0, r"ctg must lie in \[0, 1\]"),
        (0.5, -1.0, "kf_mm_per_degc_day must be >= 0"),
        (float("nan"), 3.0, "finite"),
        (0.5, float("inf"), "finite"),
    ],
)
def test_invalid_params_are_rejected(ctg: float, kf: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CemaNeigeParams(ctg, kf)


def test_parameter_bounds_are_accepted() -> None:
    CemaNeigeParams(0.0, 0.0)
    CemaNeigeParams(1.0, 10.0)


def test_snow_state_validation_copy_and_dict_round_trip() -> None:
    state = SnowState(np.array([5.0, 0.0]), np.array([-2.0, 0.0]))
    assert state.members == 2
    assert initial_snow_state().members is None
    assert float(initial_snow_state().snowpack_mm) == 0.0
    assert float(initial_snow_state().thermal_state_degc) == 0.0
    assert float(state.member(0).snowpack_mm) == 5.0
    copied = state.copy()
    copied.snowpack_mm[0] = 99.0
    assert state.snowpack_mm[0] == 5.0
    restored = SnowState.from_dict(json.loads(json.dumps(state.to_dict())))
    np.testing.assert_array_equal(restored.thermal_state_degc, state.thermal_state_degc)
    with pytest.raises(ValueError, match="non-negative"):
        pack(-1.0, 0.0)
    with pytest.raises(ValueError, match="<= 0"):
        pack(1.0, 0.5)
    with pytest.raises(ValueError, match="shape"):
        SnowState(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="single state"):
        initial_snow_state().member(0)


def test_combined_state_round_trips_and_checks_members() -> None:
    precip, temp, pet = random_forcing(200, seed=3)
    _, state = run_gr4j_snow(precip, temp, pet, GR4J, SNOW, G_THRESHOLD_MM)
    restored = GR4JSnowState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored.members is None
    np.testing.assert_array_equal(restored.gr4j.uh2_mm, state.gr4j.uh2_mm)
    assert float(restored.snow.snowpack_mm) == float(state.snow.snowpack_mm)
    copied = state.copy()
    copied.snow.snowpack_mm[...] = 123.0
    assert float(state.snow.snowpack_mm) != 123.0
    with pytest.raises(ValueError, match="members"):
        GR4JSnowState(initial_state(GR4J), SnowState(np.zeros(3), np.zeros(3)))


# --- rain/snow partition --------------------------------------------------------------------------


def test_solid_fraction_is_all_snow_below_minus_one_all_rain_above_three_linear_between() -> None:
    temps = np.array([-20.0, -1.0, -0.5, 0.0, 1.0, 2.0, 2.5, 3.0, 25.0])
    expected = [1.0, 1.0, 0.875, 0.75, 0.5, 0.25, 0.125, 0.0, 0.0]
    np.testing.assert_allclose(solid_fraction(temps), expected, rtol=0, atol=1e-15)
    assert float(solid_fraction(1.0)) == 0.5


@settings(max_examples=50, deadline=None)
@given(
    precip=st.lists(st.floats(0.0, 80.0), min_size=1, max_size=40),
    temp=st.floats(-30.0, -1.0),
)
def test_property_all_precipitation_is_solid_at_or_below_minus_one(
    precip: list[float], temp: float
) -> None:
    p = np.array(precip)
    fluxes = run_cemaneige(p, np.full(p.size, temp), SNOW, G_THRESHOLD_MM)
    np.testing.assert_array_equal(fluxes.solid_mm, p)
    assert not fluxes.liquid_mm.any() and not fluxes.melt_mm.any()
    np.testing.assert_allclose(fluxes.snowpack_mm, np.cumsum(p), rtol=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    precip=st.lists(st.floats(0.0, 80.0), min_size=1, max_size=40),
    temp=st.floats(3.0, 40.0),
)
def test_property_all_precipitation_is_liquid_at_or_above_three_without_snow(
    precip: list[float], temp: float
) -> None:
    p = np.array(precip)
    fluxes = run_cemaneige(p, np.full(p.size, temp), SNOW, G_THRESHOLD_MM)
    np.testing.assert_array_equal(fluxes.liquid_mm, p)
    assert not fluxes.solid_mm.any() and not fluxes.snowpack_mm.any()


# --- the routine against its equations ----------------------------------------------------------


def test_hand_computed_four_day_example() -> None:
    """CTG = 0.5, Kf = 3 mm/degC/day, Gthreshold = 20 mm, snow-free start (G = 0, eTG = 0)."""
    precip = np.array([10.0, 5.0, 0.0, 3.0])
    temp = np.array([-2.0, 0.0, 4.0, 1.0])
    fluxes = run_cemaneige(precip, temp, CemaNeigeParams(0.5, 3.0), 20.0)
    # Day 1, T = -2: Fsol = 1, Psol = 10, G = 10; eTG = min(0, 0.5*0 + 0.5*(-2)) = -1: no melt.
    # Day 2, T = 0: Fsol = 1 - (0 + 1)/4 = 0.75, Psol = 3.75, Pliq = 1.25, G = 13.75;
    #   eTG = min(0, 0.5*(-1) + 0.5*0) = -0.5: no melt.
    # Day 3, T = 4: Fsol = 0, G = 13.75; eTG = min(0, -0.25 + 2) = 0 and T > 0:
    #   PotMelt = min(13.75, 3*4) = 12; Gratio = 13.75/20 = 0.6875;
    #   melt = (0.9*0.6875 + 0.1)*12 = 0.71875*12 = 8.625; G = 5.125.
    # Day 4, T = 1: Fsol = 1 - 2/4 = 0.5, Psol = 1.5, Pliq = 1.5, G = 6.625;
    #   eTG = min(0, 0 + 0.5) = 0: PotMelt = min(6.625, 3) = 3; Gratio = 6.625/20 = 0.33125;
    #   melt = (0.298125 + 0.1)*3 = 1.194375; G = 5.430625; liquid = 1.5 + 1.194375 = 2.694375.
    np.testing.assert_allclose(fluxes.solid_mm, [10.0, 3.75, 0.0, 1.5], rtol=1e-14)
    np.testing.assert_allclose(fluxes.melt_mm, [0.0, 0.0, 8.625, 1.194375], rtol=1e-14)
    np.testing.assert_allclose(fluxes.liquid_mm, [0.0, 1.25, 8.625, 2.694375], rtol=1e-14)
    np.testing.assert_allclose(fluxes.snowpack_mm, [10.0, 13.75, 5.125, 5.430625], rtol=1e-14)
    assert float(fluxes.final_state.snowpack_mm) == pytest.approx(5.430625, rel=1e-14)
    assert float(fluxes.final_state.thermal_state_degc) == 0.0


@pytest.mark.parametrize(
    ("ctg", "kf", "g_threshold"), [(0.6, 3.5, 80.0), (0.0, 9.0, 5.0), (0.97, 0.7, 400.0)]
)
def test_matches_independent_transcription_of_the_equations(
    ctg: float, kf: float, g_threshold: float
) -> None:
    precip, temp, _ = random_forcing(3 * 365, seed=11)
    fluxes = run_cemaneige(precip, temp, CemaNeigeParams(ctg, kf), g_threshold, pack(12.0, -3.0))
    liquid, melt, g_end, etg_end = reference_cemaneige(
        precip, temp, ctg, kf, g_threshold, g=12.0, etg=-3.0
    )
    assert melt.sum() > 10.0  # the forcing does exercise the melt
    np.testing.assert_allclose(fluxes.liquid_mm, liquid, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fluxes.melt_mm, melt, rtol=1e-12, atol=1e-12)
    assert float(fluxes.final_state.snowpack_mm) == pytest.approx(g_end, rel=1e-12, abs=1e-12)
    assert float(fluxes.final_state.thermal_state_degc) == pytest.approx(etg_end, abs=1e-12)


def test_no_melt_when_it_is_never_above_zero() -> None:
    rng = np.random.default_rng(0)
    precip = rng.gamma(0.6, 8.0, 400)
    temp = -rng.gamma(2.0, 3.0, 400)
    temp[::7] = 0.0  # exactly at the melt threshold does not melt either
    for params in (CemaNeigeParams(0.0, 10.0), SNOW, CemaNeigeParams(1.0, 10.0)):
        fluxes = run_cemaneige(precip, temp, params, 5.0, pack(500.0, 0.0))
        assert not fluxes.melt_mm.any()
        np.testing.assert_allclose(fluxes.liquid_mm, precip * (1 - solid_fraction(temp)))
        assert float(fluxes.final_state.snowpack_mm) == pytest.approx(
            500.0 + float(fluxes.solid_mm.sum()), rel=1e-12
        )


def test_a_cold_snowpack_melts_only_once_its_thermal_state_reaches_zero() -> None:
    ctg = 0.8
    days = 30
    temp = np.full(days, 2.0)
    fluxes = run_cemaneige(
        np.zeros(days), temp, CemaNeigeParams(ctg, 4.0), 50.0, pack(100.0, -10.0)
    )
    # eTG(n) = min(0, 0.8 eTG(n-1) + 0.2*2): the first n with eTG(n) = 0 is the first melt day.
    etg, first_zero = -10.0, None
    for n in range(days):
        etg = min(0.0, ctg * etg + (1 - ctg) * 2.0)
        if etg == 0.0 and first_zero is None:
            first_zero = n
    assert first_zero is not None and first_zero > 3
    assert not fluxes.melt_mm[:first_zero].any()
    assert (fluxes.melt_mm[first_zero:] > 0).all()
    # PotMelt = min(G, 4*2) = 8 and Gratio = min(100/50, 1) = 1: the first melt is 8 mm.
    assert fluxes.melt_mm[first_zero] == pytest.approx(8.0, rel=1e-14)
    # A snowpack that has warmed to 0 degC does not melt on a day at 0 degC or below.
    cold_day = run_cemaneige(
        np.zeros(2), np.array([0.0, -0.5]), CemaNeigeParams(0.0, 4.0), 50.0, pack(100.0, 0.0)
    )
    assert not cold_day.melt_mm.any()
    # With CTG = 0 the thermal state follows the air at once, so the first warm day melts.
    quick = run_cemaneige(
        np.zeros(3), temp[:3], CemaNeigeParams(0.0, 4.0), 50.0, pack(100.0, -10.0)
    )
    assert quick.melt_mm[0] == pytest.approx(8.0, rel=1e-14)


def test_snow_cover_fraction_sets_the_melt_speed() -> None:
    """Melt = (0.9 Gratio + 0.1) PotMelt with Gratio = min(G / Gthreshold, 1)."""
    params = CemaNeigeParams(0.0, 4.0)  # T = 5 degC: Kf (T - 0) = 20 mm/day
    warm = np.array([5.0])

    def melt(g0: float, g_threshold: float) -> float:
        fluxes = run_cemaneige(np.zeros(1), warm, params, g_threshold, pack(g0, 0.0))
        return float(fluxes.melt_mm[0])

    # Thick cover (G >= Gthreshold): Gratio = 1, the full potential melt of 20 mm.
    assert melt(200.0, 100.0) == pytest.approx(20.0, rel=1e-14)
    # Half cover: Gratio = 0.5, melt = (0.45 + 0.1) * 20 = 11 mm.
    assert melt(50.0, 100.0) == pytest.approx(11.0, rel=1e-14)
    # A 1 mm pack: PotMelt = min(1, 20) = 1, Gratio = 0.01, melt = (0.009 + 0.1) * 1 = 0.109.
    assert melt(1.0, 100.0) == pytest.approx(0.109, rel=1e-13)
    # On a negligible cover only MinSpeed = 10 % of the pack melts per day, so a thin pack
    # shrinks geometrically, G(n) = G(0) 0.9^n, instead of vanishing on the first warm day.
    days = 10
    fluxes = run_cemaneige(np.zeros(days), np.full(days, 5.0), params, 1e9, pack(10.0, 0.0))
    np.testing.assert_allclose(fluxes.snowpack_mm, 10.0 * 0.9 ** np.arange(1, days + 1), rtol=1e-6)


# --- conservation, states and ensembles ---------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    ctg=st.floats(*SNOW_PARAM_BOUNDS["ctg"]),
    kf=st.floats(*SNOW_PARAM_BOUNDS["kf_mm_per_degc_day"]),
    g_threshold=st.floats(0.01, 1000.0),
    g0=st.floats(0.0, 300.0),
    etg0=st.floats(-20.0, 0.0),
    members=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_mass_balance_and_physical_ranges(
    ctg: float,
    kf: float,
    g_threshold: float,
    g0: float,
    etg0: float,
    members: int,
    seed: int,
) -> None:
    """sum(P) = sum(liquid out) + final G - initial G, for single runs and ensembles."""
    rng = np.random.default_rng(seed)
    precip = np.stack([random_forcing(300, seed + k)[0] for k in range(members)])
    temp = random_forcing(300, seed)[1] + rng.normal(0, 2.0, (members, 300))
    start_g = g0 * rng.random(members)
    state = SnowState(start_g, np.full(members, etg0))
    fluxes = run_cemaneige(precip, temp, CemaNeigeParams(ctg, kf), g_threshold, state)
    residual = precip.sum(axis=1) - fluxes.liquid_mm.sum(axis=1) - fluxes.final_state.snowpack_mm
    np.testing.assert_allclose(residual + start_g, 0.0, atol=1e-9)
    assert (fluxes.melt_mm >= 0).all() and (fluxes.liquid_mm >= 0).all()
    assert (fluxes.snowpack_mm >= 0).all()
    assert (fluxes.final_state.thermal_state_degc <= 0).all()
    single = run_cemaneige(
        precip[0], temp[0], CemaNeigeParams(ctg, kf), g_threshold, state.member(0)
    )
    assert precip[0].sum() - single.liquid_mm.sum() - float(
        single.final_state.snowpack_mm
    ) + start_g[0] == pytest.approx(0.0, abs=1e-9)


def test_running_two_halves_with_the_carried_state_equals_the_whole_run() -> None:
    precip, temp, pet = random_forcing(900, seed=7)
    whole = run_cemaneige(precip, temp, SNOW, G_THRESHOLD_MM)
    first = run_cemaneige(precip[:400], temp[:400], SNOW, G_THRESHOLD_MM)
    saved = SnowState.from_dict(json.loads(json.dumps(first.final_state.to_dict())))
    second = run_cemaneige(precip[400:], temp[400:], SNOW, G_THRESHOLD_MM, saved)
    np.testing.assert_array_equal(
        np.concatenate([first.liquid_mm, second.liquid_mm]), whole.liquid_mm
    )
    np.testing.assert_array_equal(second.final_state.snowpack_mm, whole.final_state.snowpack_mm)

    q_whole, state_whole = run_gr4j_snow(precip, temp, pet, GR4J, SNOW, G_THRESHOLD_MM)
    q1, state1 = run_gr4j_snow(precip[:400], temp[:400], pet[:400], GR4J, SNOW, G_THRESHOLD_MM)
    q2, state2 = run_gr4j_snow(
        precip[400:], temp[400:], pet[400:], GR4J, SNOW, G_THRESHOLD_MM, state1
    )
    np.testing.assert_array_equal(np.concatenate([q1, q2]), q_whole)
    np.testing.assert_array_equal(state2.gr4j.uh1_mm, state_whole.gr4j.uh1_mm)
    assert float(state2.snow.thermal_state_degc) == float(state_whole.snow.thermal_state_degc)


def test_ensemble_run_equals_member_by_member_runs() -> None:
    precip = np.stack([random_forcing(500, seed)[0] for seed in range(3)])
    _, temp, pet = random_forcing(500, seed=9)
    temps = temp + np.array([[-2.0], [0.0], [1.5]])
    start = GR4JSnowState(
        GR4JState(
            np.array([100.0, 200.0, 50.0]),
            np.array([30.0, 10.0, 60.0]),
            np.zeros((3, 2)),
            np.zeros((3, 4)),
        ),
        SnowState(np.array([0.0, 40.0, 120.0]), np.array([0.0, -1.0, -6.0])),
    )
    for t in (temp, temps):  # shared 1-D temperature and one series per member
        q_ens, state_ens = run_gr4j_snow(precip, t, pet, GR4J, SNOW, G_THRESHOLD_MM, start)
        snow_ens = run_cemaneige(precip, t, SNOW, G_THRESHOLD_MM, start.snow)
        assert q_ens.shape == (3, 500) and state_ens.members == 3
        for m in range(3):
            t_m = t if t.ndim == 1 else t[m]
            q_m, state_m = run_gr4j_snow(
                precip[m], t_m, pet, GR4J, SNOW, G_THRESHOLD_MM, start.member(m)
            )
            snow_m = run_cemaneige(precip[m], t_m, SNOW, G_THRESHOLD_MM, start.snow.member(m))
            np.testing.assert_array_equal(q_ens[m], q_m)
            np.testing.assert_array_equal(snow_ens.snowpack_mm[m], snow_m.snowpack_mm)
            assert float(state_ens.snow.snowpack_mm[m]) == float(state_m.snow.snowpack_mm)
            np.testing.assert_array_equal(state_ens.member(m).gr4j.uh2_mm, state_m.gr4j.uh2_mm)


def test_single_state_is_copied_to_every_member() -> None:
    precip, temp, pet = random_forcing(200, seed=4)
    q, _ = run_gr4j_snow(precip, temp, pet, GR4J, SNOW, G_THRESHOLD_MM)
    q_ens, state = run_gr4j_snow(np.tile(precip, (4, 1)), temp, pet, GR4J, SNOW, G_THRESHOLD_MM)
    assert state.members == 4
    for m in range(4):
        np.testing.assert_array_equal(q_ens[m], q)


def test_warm_climate_without_snow_gives_exactly_gr4j() -> None:
    precip, temp, pet = random_forcing(1000, seed=5)
    warm = 3.0 + np.abs(temp)  # every day at or above 3 degC: all rain, no snowpack
    warm[::10] = 3.0
    q_snow, state = run_gr4j_snow(precip, warm, pet, GR4J, SNOW, G_THRESHOLD_MM)
    q_plain, gr4j_state = run_gr4j(precip, pet, GR4J)
    np.testing.assert_array_equal(q_snow, q_plain)
    np.testing.assert_array_equal(state.gr4j.uh1_mm, gr4j_state.uh1_mm)
    assert float(state.gr4j.routing_mm) == float(gr4j_state.routing_mm)
    assert float(state.snow.snowpack_mm) == 0.0


def test_snow_holds_back_winter_water_and_releases_it_in_the_thaw() -> None:
    days = 120
    precip = np.full(days, 4.0)
    temp = np.where(np.arange(days) < 60, -5.0, 6.0)
    pet = np.zeros(days)
    q_snow, _ = run_gr4j_snow(precip, temp, pet, GR4J, SNOW, G_THRESHOLD_MM)
    q_rain, _ = run_gr4j(precip, pet, GR4J)
    assert q_snow[:60].sum() < 0.5 * q_rain[:60].sum()
    assert q_snow[60:].sum() > q_rain[60:].sum()


# --- the catchment constant Gthreshold ----------------------------------------------------------


def test_snow_threshold_is_ninety_percent_of_mean_annual_solid_precipitation() -> None:
    # Two complete years, 1 mm/day, the first 100 days of each fully solid (T = -5 degC), the
    # rest fully liquid (T = 10 degC): 100 mm of snow a year, over 366 + 365 days.
    years = np.repeat([2000, 2001], [366, 365])
    doy = np.concatenate([np.arange(366), np.arange(365)])
    temp = np.where(doy < 100, -5.0, 10.0)
    precip = np.ones(years.size)
    expected = 0.9 * 200.0 / 731.0 * 365.25
    assert snow_threshold_mm(precip, temp, years) == pytest.approx(expected, rel=1e-14)
    assert expected == pytest.approx(0.9 * 100.0, rel=1e-3)


def test_snow_threshold_does_not_extrapolate_a_partial_year_from_one_season() -> None:
    # Two complete years with 100 mm of snow each, then January of a third year: 31 days of
    # snow. Extrapolating that January to a whole year would claim 365 mm of snow for it; the
    # year counts for its 31 days instead: 231 mm over 761 days, annualised.
    years = np.repeat([2000, 2001, 2002], [365, 365, 31])
    doy = np.concatenate([np.arange(365), np.arange(365), np.arange(31)])
    temp = np.where(doy < 100, -5.0, 10.0)
    precip = np.ones(years.size)
    threshold = snow_threshold_mm(precip, temp, years)
    assert threshold == pytest.approx(0.9 * 231.0 / 761.0 * 365.25, rel=1e-14)
    assert threshold < 0.9 * 115.0


def test_snow_threshold_of_a_snow_free_record_is_a_small_positive_floor() -> None:
    years = np.repeat([2000], 50)
    assert snow_threshold_mm(np.ones(50), np.full(50, 12.0), years) == SNOW_THRESHOLD_FLOOR_MM
    assert SNOW_THRESHOLD_FLOOR_MM > 0


@pytest.mark.parametrize(
    ("precip", "temp", "years", "message"),
    [
        ([1.0, 2.0], [0.0, 0.0], [2000], "same length"),
        ([1.0, np.nan], [0.0, 0.0], [2000, 2000], "NaN"),
        ([1.0, -2.0], [0.0, 0.0], [2000, 2000], "negative"),
        ([1.0, 2.0], [0.0, np.nan], [2000, 2000], "temperature_c contains NaN"),
        ([1.0, 2.0], [0.0, 0.0], [2000.5, 2000.5], "integer"),
        ([], [], [], "at least one day"),
    ],
)
def test_snow_threshold_rejects_bad_inputs(
    precip: list[float], temp: list[float], years: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        snow_threshold_mm(np.array(precip), np.array(temp), np.array(years))


# --- bad inputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("precip", "temp", "message"),
    [
        ([1.0, np.nan], [0.0, 0.0], "precipitation_mm contains NaN"),
        ([1.0, 2.0], [0.0, np.inf], "temperature_c contains NaN or infinite"),
        ([1.0, -2.0], [0.0, 0.0], "precipitation_mm contains negative"),
        ([1.0, 2.0], [0.0, 0.0, 0.0], "does not match"),
        ([[[1.0]]], [0.0], "1-D .* or 2-D"),
    ],
)
def test_bad_forcing_is_rejected(precip: list[float], temp: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_cemaneige(np.array(precip), np.array(temp), SNOW, G_THRESHOLD_MM)
    with pytest.raises(ValueError, match=message):
        run_gr4j_snow(np.array(precip), np.array(temp), np.ones(1), GR4J, SNOW, G_THRESHOLD_MM)


@pytest.mark.parametrize("g_threshold", [0.0, -5.0, float("nan"), float("inf")])
def test_non_positive_snow_threshold_is_rejected(g_threshold: float) -> None:
    with pytest.raises(ValueError, match="g_threshold_mm must be a finite number > 0"):
        run_cemaneige(np.ones(3), np.zeros(3), SNOW, g_threshold)


def test_states_that_do_not_fit_the_forcing_are_rejected() -> None:
    ensemble = SnowState(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="1-D forcing needs a single snow state"):
        run_cemaneige(np.ones(5), np.zeros(5), SNOW, G_THRESHOLD_MM, ensemble)
    with pytest.raises(ValueError, match="3 members, the forcing has 2"):
        run_cemaneige(np.ones((2, 5)), np.zeros(5), SNOW, G_THRESHOLD_MM, ensemble)
