"""Unit tests of the warning-verification scores and of the ESP trace selection."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinmesh.core.ensembles import esp_dataset, esp_trace_starts
from twinmesh.core.hydrology.verification import brier_score, brier_skill_score, contingency
from twinmesh.core.twin import Region

# --- contingency table --------------------------------------------------------------------------


def test_contingency_counts_and_scores_by_hand() -> None:
    warned = [1, 1, 1, 0, 0, 0, 0, 1]
    event = [1, 1, 0, 1, 0, 0, 0, 0]
    table = contingency(warned, event)
    assert (table.hits, table.misses, table.false_alarms, table.correct_negatives) == (2, 1, 2, 3)
    assert table.pod == pytest.approx(2 / 3)
    assert table.far == pytest.approx(2 / 4)
    assert table.csi == pytest.approx(2 / 5)
    assert table.to_dict()["csi"] == 0.4


def test_undefined_scores_are_nan_and_null_in_json() -> None:
    table = contingency([False, False], [False, False])
    assert math.isnan(table.pod) and math.isnan(table.far) and math.isnan(table.csi)
    assert table.to_dict()["pod"] is None


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=200))
def test_the_four_cells_partition_the_days(pairs: list[tuple[bool, bool]]) -> None:
    warned, event = zip(*pairs, strict=True)
    t = contingency(list(warned), list(event))
    assert t.hits + t.misses + t.false_alarms + t.correct_negatives == len(pairs)
    assert t.events == sum(event) and t.warnings == sum(warned)


def test_contingency_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        contingency([True], [True, False])
    with pytest.raises(ValueError, match="booleans"):
        contingency([0.5], [1])


# --- Brier score and skill ----------------------------------------------------------------------


def test_brier_score_by_hand() -> None:
    assert brier_score([0.0, 1.0, 0.5], [0, 1, 1]) == pytest.approx(0.25 / 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score([1.5], [1])


def test_brier_skill_score_is_one_when_perfect_zero_for_climatology() -> None:
    event = np.array([0, 0, 1, 0, 1, 0, 0, 0, 0, 0], dtype=bool)
    base = float(event.mean())
    assert brier_skill_score(event.astype(float), event, base) == pytest.approx(1.0)
    assert brier_skill_score(np.full(10, base), event, base) == pytest.approx(0.0)
    assert brier_skill_score(1 - event.astype(float), event, base) < 0
    assert math.isnan(brier_skill_score([0.0, 0.0], [False, False], 0.0))


# --- ESP traces ---------------------------------------------------------------------------------

TIME = pd.date_range("1980-01-01", "1984-12-31", freq="D")


def test_esp_traces_are_the_same_window_in_every_other_year() -> None:
    starts = esp_trace_starts(TIME, date(1982, 6, 10), lead_days=10)
    days = [TIME[s].date() for s in starts]
    assert days == [date(y, 6, 11) for y in (1980, 1981, 1983, 1984)]


def test_esp_never_uses_the_verified_year_and_needs_the_whole_window() -> None:
    # Issued on 31 Dec 1984: the 1984 trace would start in 1985, outside the record;
    # the year 1983's trace starts on 1 Jan 1984 (the day after 31 Dec 1983).
    starts = esp_trace_starts(TIME, date(1984, 12, 31), lead_days=10)
    assert [TIME[s].date() for s in starts] == [date(y, 1, 1) for y in (1981, 1982, 1983, 1984)]
    # Issued late in December of 1982: 1984's window would run past the record's end.
    late = esp_trace_starts(TIME, date(1982, 12, 25), lead_days=10)
    assert [TIME[s].year for s in late] == [1980, 1981, 1983]


def test_esp_reads_29_february_as_28_february() -> None:
    starts = esp_trace_starts(TIME, date(1984, 2, 29), lead_days=5)
    # The day after 28 February: 29 February in the leap year 1980, 1 March otherwise.
    expected = [date(1980, 2, 29)] + [date(y, 3, 1) for y in (1981, 1982, 1983)]
    assert [TIME[s].date() for s in starts] == expected


def test_esp_dataset_holds_the_record_of_each_trace() -> None:
    regions = [
        Region(
            id=r,
            name=r,
            area_km2=1.0,
            geometry={"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
        )
        for r in ("a", "b")
    ]
    rng = np.random.default_rng(0)
    precip = rng.gamma(0.5, 4.0, (2, TIME.size))
    temp = rng.normal(8, 6, (2, TIME.size))
    ds = esp_dataset(TIME, regions, precip, temp, first_issue=date(1981, 1, 1), lead_days=7)
    assert ds["precipitation"].dims == ("issued", "member", "lead", "region")
    one = ds.sel(issued="1983-03-15")
    for m in range(ds.sizes["member"]):
        start = pd.Timestamp(one["trace_start"].values[m])
        assert start.year != 1983
        i = TIME.get_loc(start)
        np.testing.assert_allclose(
            one["precipitation"].isel(member=m).values, precip[:, i : i + 7].T, rtol=1e-6
        )
        np.testing.assert_allclose(
            one["temperature"].isel(member=m).values, temp[:, i : i + 7].T, rtol=1e-6
        )
