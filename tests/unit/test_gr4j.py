"""Unit tests of the GR4J model and its calibration (twinmesh.core.hydrology.gr4j/calibration)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinmesh.core.hydrology.calibration import CalibrationResult, calibrate_gr4j
from twinmesh.core.hydrology.gr4j import (
    PARAM_BOUNDS,
    PARAM_NAMES,
    GR4JParams,
    GR4JState,
    initial_state,
    m3s_to_mm_per_day,
    mm_per_day_to_m3s,
    run_gr4j,
    run_gr4j_fluxes,
    s_curve_uh1,
    s_curve_uh2,
    unit_hydrographs,
)

PARAMS = GR4JParams(x1_mm=350.0, x2_mm=-1.2, x3_mm=90.0, x4_days=1.7)


def random_forcing(days: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Intermittent gamma-distributed rain and seasonal PET, both in mm/day."""
    rng = np.random.default_rng(seed)
    precip = rng.gamma(0.6, 8.0, days) * (rng.random(days) < 0.45)
    doy = np.arange(days) % 365
    pet = np.clip(
        2.2 + 1.8 * np.sin(2 * np.pi * (doy - 100) / 365) + rng.normal(0, 0.3, days), 0, None
    )
    return precip, pet


def water_balance_residual(
    precip: np.ndarray, pet: np.ndarray, params: GR4JParams, state: GR4JState | None = None
) -> float:
    """P - AE - Q + F - change of all storages (stores and UH queues), in mm."""
    start = state if state is not None else initial_state(params)
    fluxes = run_gr4j_fluxes(precip, pet, params, start)
    storage_change = fluxes.final_state.total_storage_mm() - start.total_storage_mm()
    return float(
        precip.sum()
        - fluxes.actual_et_mm.sum()
        - fluxes.streamflow_mm.sum()
        + fluxes.exchange_mm.sum()
        - storage_change
    )


def reference_gr4j(precip: np.ndarray, pet: np.ndarray, p: GR4JParams) -> np.ndarray:
    """Straight transcription of the published equations, with the unit hydrographs applied
    as an explicit convolution over the history of effective rainfall (no queues)."""
    x1, x2, x3, x4 = p.x1_mm, p.x2_mm, p.x3_mm, p.x4_days
    n1, n2 = math.ceil(x4), math.ceil(2 * x4)

    def sh1(t: float) -> float:
        return 0.0 if t <= 0 else (t / x4) ** 2.5 if t < x4 else 1.0

    def sh2(t: float) -> float:
        if t <= 0:
            return 0.0
        if t <= x4:
            return 0.5 * (t / x4) ** 2.5
        if t < 2 * x4:
            return 1.0 - 0.5 * (2.0 - t / x4) ** 2.5
        return 1.0

    uh1 = [sh1(j) - sh1(j - 1) for j in range(1, n1 + 1)]
    uh2 = [sh2(j) - sh2(j - 1) for j in range(1, n2 + 1)]
    s, r = 0.6 * x1, 0.7 * x3
    pr_hist: list[float] = []
    q = []
    for pt, et in zip(precip, pet, strict=True):
        pn, en = max(pt - et, 0.0), max(et - pt, 0.0)
        ps = x1 * (1 - (s / x1) ** 2) * math.tanh(pn / x1) / (1 + s / x1 * math.tanh(pn / x1))
        es = s * (2 - s / x1) * math.tanh(en / x1) / (1 + (1 - s / x1) * math.tanh(en / x1))
        s = s - es + ps
        perc = s * (1 - (1 + (4 / 9 * s / x1) ** 4) ** -0.25)
        s -= perc
        pr_hist.append(perc + pn - ps)
        q9 = sum(0.9 * uh1[k] * pr_hist[-1 - k] for k in range(min(n1, len(pr_hist))))
        q1 = sum(0.1 * uh2[k] * pr_hist[-1 - k] for k in range(min(n2, len(pr_hist))))
        f = x2 * (r / x3) ** 3.5
        r = max(0.0, r + q9 + f)
        qr = r * (1 - (1 + (r / x3) ** 4) ** -0.25)
        r -= qr
        q.append(qr + max(0.0, q1 + f))
    return np.asarray(q)


# --- parameters, state and unit conversions ---------------------------------------------------


def test_params_round_trip_through_array() -> None:
    arr = PARAMS.as_array()
    assert arr.tolist() == [350.0, -1.2, 90.0, 1.7]
    assert GR4JParams.from_array(arr) == PARAMS
    assert list(PARAM_BOUNDS) == list(PARAM_NAMES)
    assert PARAMS.within_bounds()
    assert not GR4JParams(5000.0, 0.0, 90.0, 1.7).within_bounds()


@pytest.mark.parametrize("bad", [[0.0, 0.0, 90.0, 1.7], [350.0, 0.0, -1.0, 1.7], [1, 2, 3]])
def test_invalid_params_are_rejected(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        GR4JParams.from_array(bad)


def test_initial_state_fills_stores_and_empties_queues() -> None:
    state = initial_state(PARAMS, s_frac=0.5, r_frac=0.25)
    assert float(state.production_mm) == pytest.approx(175.0)
    assert float(state.routing_mm) == pytest.approx(22.5)
    assert state.uh1_mm.shape == (2,) and state.uh2_mm.shape == (4,)
    assert not state.uh1_mm.any() and not state.uh2_mm.any()
    with pytest.raises(ValueError):
        initial_state(PARAMS, s_frac=1.5)


def test_state_round_trips_through_dict() -> None:
    precip, pet = random_forcing(100, seed=3)
    _, state = run_gr4j(precip, pet, PARAMS)
    restored = GR4JState.from_dict(state.to_dict())
    np.testing.assert_array_equal(restored.uh2_mm, state.uh2_mm)
    assert float(restored.production_mm) == float(state.production_mm)


def test_state_from_other_x4_is_rejected() -> None:
    precip, pet = random_forcing(30, seed=0)
    state = initial_state(GR4JParams(350.0, 0.0, 90.0, 4.0))
    with pytest.raises(ValueError, match="x4_days"):
        run_gr4j(precip, pet, PARAMS, state)


def test_unit_conversions() -> None:
    # 1 mm/day over 86.4 km2 is exactly 1 m3/s.
    assert float(mm_per_day_to_m3s(1.0, 86.4)) == pytest.approx(1.0)
    q = np.array([0.0, 1.5, 12.0])
    np.testing.assert_allclose(m3s_to_mm_per_day(mm_per_day_to_m3s(q, 2976.41), 2976.41), q)
    with pytest.raises(ValueError):
        mm_per_day_to_m3s(q, 0.0)


@pytest.mark.parametrize(
    ("precip", "pet"),
    [([1.0, np.nan], [1.0, 1.0]), ([1.0, -2.0], [1.0, 1.0]), ([1.0, 2.0], [1.0, 1.0, 1.0])],
)
def test_bad_forcing_is_rejected(precip: list[float], pet: list[float]) -> None:
    with pytest.raises(ValueError):
        run_gr4j(np.array(precip), np.array(pet), PARAMS)


# --- unit hydrographs ---------------------------------------------------------------------------


def test_uh_ordinates_match_analytical_s_curves_for_x4_2_5() -> None:
    uh1, uh2 = unit_hydrographs(2.5)
    sh1 = [0.0, (1 / 2.5) ** 2.5, (2 / 2.5) ** 2.5, 1.0]
    sh2 = [
        0.0,
        0.5 * (1 / 2.5) ** 2.5,
        0.5 * (2 / 2.5) ** 2.5,
        1 - 0.5 * (2 - 3 / 2.5) ** 2.5,
        1 - 0.5 * (2 - 4 / 2.5) ** 2.5,
        1.0,
    ]
    np.testing.assert_allclose(uh1, np.diff(sh1), rtol=0, atol=1e-15)
    np.testing.assert_allclose(uh2, np.diff(sh2), rtol=0, atol=1e-15)


@pytest.mark.parametrize("x4", [0.5, 1.0, 1.3, 2.5, 3.7, 6.0])
def test_uh_ordinates_sum_to_one_and_have_the_published_bases(x4: float) -> None:
    uh1, uh2 = unit_hydrographs(x4)
    assert uh1.size == math.ceil(x4) and uh2.size == math.ceil(2 * x4)
    assert uh1.sum() == pytest.approx(1.0, abs=1e-14)
    assert uh2.sum() == pytest.approx(1.0, abs=1e-14)
    assert (uh1 >= 0).all() and (uh2 >= 0).all()


def test_s_curves_at_their_break_points() -> None:
    x4 = 3.0
    assert s_curve_uh1(np.array([-1.0, 0.0, 1.5, 3.0, 9.0]), x4).tolist() == pytest.approx(
        [0.0, 0.0, 0.5**2.5, 1.0, 1.0]
    )
    assert s_curve_uh2(np.array([0.0, 1.5, 3.0, 4.5, 6.0, 7.0]), x4).tolist() == pytest.approx(
        [0.0, 0.5 * 0.5**2.5, 0.5, 1 - 0.5 * 0.5**2.5, 1.0, 1.0]
    )


# --- the model against its equations ------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [PARAMS, GR4JParams(120.0, 2.5, 30.0, 0.6), GR4JParams(1500.0, -6.0, 600.0, 5.2)],
)
def test_matches_independent_transcription_of_the_equations(params: GR4JParams) -> None:
    precip, pet = random_forcing(400, seed=11)
    q, _ = run_gr4j(precip, pet, params)
    np.testing.assert_allclose(q, reference_gr4j(precip, pet, params), rtol=1e-10, atol=1e-12)


def test_production_store_drains_by_percolation_only_without_rain_or_pet() -> None:
    params = GR4JParams(400.0, 0.0, 100.0, 2.0)
    days = 200
    fluxes = run_gr4j_fluxes(np.zeros(days), np.zeros(days), params)
    s = 0.6 * params.x1_mm
    for t in range(days):
        perc = s * (1 - (1 + (4 / 9 * s / params.x1_mm) ** 4) ** -0.25)
        assert fluxes.percolation_mm[t] == pytest.approx(perc, rel=1e-12)
        s -= perc
        assert fluxes.production_mm[t] == pytest.approx(s, rel=1e-12)
    assert not fluxes.actual_et_mm.any()
    assert (np.diff(fluxes.production_mm) < 0).all()


def test_mass_balance_closes_over_a_long_random_run() -> None:
    precip, pet = random_forcing(365 * 20, seed=5)
    for params in (PARAMS, GR4JParams(250.0, 3.0, 60.0, 3.3), GR4JParams(900.0, -7.0, 30.0, 0.8)):
        fluxes = run_gr4j_fluxes(precip, pet, params)
        assert np.abs(fluxes.exchange_mm).sum() > 1.0
        assert abs(water_balance_residual(precip, pet, params)) < 1e-6


@settings(max_examples=60, deadline=None)
@given(
    x1=st.floats(*PARAM_BOUNDS["x1_mm"]),
    x2=st.floats(*PARAM_BOUNDS["x2_mm"]),
    x3=st.floats(*PARAM_BOUNDS["x3_mm"]),
    x4=st.floats(*PARAM_BOUNDS["x4_days"]),
    s_frac=st.floats(0.0, 1.0),
    r_frac=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_mass_balance_and_non_negative_flow(
    x1: float, x2: float, x3: float, x4: float, s_frac: float, r_frac: float, seed: int
) -> None:
    params = GR4JParams(x1, x2, x3, x4)
    precip, pet = random_forcing(400, seed)
    precip[::37] *= 20.0  # occasional storms
    state = initial_state(params, s_frac, r_frac)
    fluxes = run_gr4j_fluxes(precip, pet, params, state)
    assert (fluxes.streamflow_mm >= 0).all()
    assert (fluxes.production_mm >= 0).all() and (fluxes.production_mm <= x1).all()
    assert (fluxes.routing_mm >= 0).all()
    assert abs(water_balance_residual(precip, pet, params, state)) < 1e-6


# --- published behaviour ------------------------------------------------------------------------


def test_runs_are_deterministic() -> None:
    precip, pet = random_forcing(1000, seed=2)
    q1, s1 = run_gr4j(precip, pet, PARAMS)
    q2, s2 = run_gr4j(precip, pet, PARAMS)
    np.testing.assert_array_equal(q1, q2)
    np.testing.assert_array_equal(s1.uh1_mm, s2.uh1_mm)


def test_no_exchange_when_x2_is_zero_so_water_is_conserved() -> None:
    precip, pet = random_forcing(3000, seed=4)
    params = GR4JParams(350.0, 0.0, 90.0, 1.7)
    fluxes = run_gr4j_fluxes(precip, pet, params)
    assert not fluxes.exchange_mm.any()
    start = initial_state(params)
    storage_change = fluxes.final_state.total_storage_mm() - start.total_storage_mm()
    residual = (
        precip.sum() - fluxes.actual_et_mm.sum() - fluxes.streamflow_mm.sum() - storage_change
    )
    assert abs(residual) < 1e-6


def test_larger_x4_delays_the_peak_of_a_single_pulse() -> None:
    precip = np.zeros(60)
    precip[5] = 60.0
    pet = np.zeros(60)
    peaks = []
    for x4 in (1.0, 2.5, 5.0):
        state = initial_state(GR4JParams(300.0, 0.0, 80.0, x4), s_frac=0.3, r_frac=0.1)
        q, _ = run_gr4j(precip, pet, GR4JParams(300.0, 0.0, 80.0, x4), state)
        peaks.append(int(np.argmax(q)))
    assert peaks[0] < peaks[1] < peaks[2]
    assert peaks[0] >= 5


def test_ensemble_of_identical_members_equals_the_single_run() -> None:
    precip, pet = random_forcing(500, seed=6)
    q, state = run_gr4j(precip, pet, PARAMS)
    q_ens, state_ens = run_gr4j(np.tile(precip, (4, 1)), np.tile(pet, (4, 1)), PARAMS)
    assert q_ens.shape == (4, 500)
    for member in range(4):
        np.testing.assert_array_equal(q_ens[member], q)
        np.testing.assert_array_equal(state_ens.member(member).uh2_mm, state.uh2_mm)
    assert state_ens.members == 4
    q_shared_pet, _ = run_gr4j(np.tile(precip, (2, 1)), pet, PARAMS)
    np.testing.assert_array_equal(q_shared_pet[1], q)


def test_forecast_from_saved_state_continues_the_run_exactly() -> None:
    precip, pet = random_forcing(800, seed=7)
    q_full, _ = run_gr4j(precip, pet, PARAMS)
    q_hist, state = run_gr4j(precip[:600], pet[:600], PARAMS)
    q_fc, _ = run_gr4j(np.tile(precip[600:], (3, 1)), pet[600:], PARAMS, state)
    np.testing.assert_allclose(np.concatenate([q_hist, q_fc[2]]), q_full, rtol=0, atol=0)
    _, state_after = run_gr4j(precip[:600], pet[:600], PARAMS)
    assert float(state_after.production_mm) == float(state.production_mm)


# --- calibration --------------------------------------------------------------------------------


def synthetic_case() -> tuple[np.ndarray, np.ndarray, np.ndarray, GR4JParams]:
    truth = GR4JParams(x1_mm=420.0, x2_mm=-0.8, x3_mm=110.0, x4_days=2.2)
    precip, pet = random_forcing(365 * 6, seed=1)
    q, _ = run_gr4j(precip, pet, truth)
    return precip, pet, q, truth


def test_calibration_recovers_synthetic_streamflow() -> None:
    precip, pet, q_obs, truth = synthetic_case()
    q_obs[::50] = np.nan  # gauge gaps are ignored
    calls: list[tuple[int, int]] = []
    result = calibrate_gr4j(
        precip,
        pet,
        q_obs,
        warmup_days=365,
        calibration=slice(365, 365 * 4),
        validation=slice(365 * 4, None),
        repetitions=800,
        seed=0,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert isinstance(result, CalibrationResult)
    assert result.validation_kge > 0.95
    assert result.calibration_kge > 0.95
    assert abs(result.params.x4_days - truth.x4_days) < 0.5
    assert result.params.within_bounds()
    assert calls and calls[-1] == (800, 800)
    assert all(b[0] >= a[0] for a, b in zip(calls, calls[1:], strict=False))
    data = result.to_dict()
    assert set(data["params"]) == set(PARAM_NAMES)
    assert data["repetitions"] == 800 and 0 < data["evaluations"] <= 800


def test_calibration_is_reproducible_and_leaves_global_rngs_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    precip, pet, q_obs, _ = synthetic_case()
    kwargs = {
        "warmup_days": 365,
        "calibration": slice(365, 365 * 3),
        "validation": slice(365 * 3, None),
        "repetitions": 200,
    }
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    first = calibrate_gr4j(precip, pet, q_obs, seed=42, **kwargs)
    assert (np.random.random(), random.random()) == (expected_np, expected_py)
    second = calibrate_gr4j(precip, pet, q_obs, seed=42, **kwargs)
    assert first == second
    other = calibrate_gr4j(precip, pet, q_obs, seed=7, **kwargs)
    assert other.params != first.params
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("calibration", "validation", "warmup"),
    [
        (slice(100, 365), slice(365, None), 200),  # calibration inside warm-up
        (slice(365, 700), slice(700, 700), 365),  # empty validation
        (slice(365, 700, 2), slice(700, None), 365),  # strided
    ],
)
def test_calibration_rejects_bad_periods(
    calibration: slice, validation: slice, warmup: int
) -> None:
    precip, pet, q_obs, _ = synthetic_case()
    with pytest.raises(ValueError):
        calibrate_gr4j(
            precip,
            pet,
            q_obs,
            warmup_days=warmup,
            calibration=calibration,
            validation=validation,
            repetitions=200,
        )
