"""Input checks and the warning rule, as pure functions."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinmesh.core import errors
from twinmesh.core.capabilities.early_warning import ALERT_PROBABILITY, issue_warnings
from twinmesh.core.validation import check_bbox, check_time_range, parse_day

EXTENT = (9.2, 50.35, 10.1, 51.3)
lon = st.floats(-180, 180, allow_nan=False)
lat = st.floats(-90, 90, allow_nan=False)


@given(lon, lat, lon, lat)
def test_check_bbox_accepts_exactly_the_well_formed_overlapping_boxes(w, s, e, n) -> None:
    well_formed = w <= e and s <= n
    overlaps = not (e < EXTENT[0] or w > EXTENT[2] or n < EXTENT[1] or s > EXTENT[3])
    if well_formed and overlaps:
        assert check_bbox((w, s, e, n), EXTENT) == (w, s, e, n)
    else:
        expected = errors.InvalidParameter if not well_formed else errors.OutOfExtent
        with pytest.raises(expected):
            check_bbox((w, s, e, n), EXTENT)


@pytest.mark.parametrize("bad", [(1, 2, 3), (0, 0, 200, 1), (0, float("nan"), 1, 1)])
def test_malformed_bbox(bad) -> None:
    with pytest.raises(errors.InvalidParameter):
        check_bbox(bad, EXTENT)


@given(st.dates(date(1970, 1, 1), date(2000, 1, 1)), st.dates(date(1970, 1, 1), date(2000, 1, 1)))
def test_time_range_rules(a, b) -> None:
    extent = (date(1979, 1, 1), date(1988, 12, 31))
    if a > b:
        with pytest.raises(errors.InvalidTimeRange, match="inverted"):
            check_time_range(a, b, extent)
    elif a < extent[0] or b > extent[1]:
        with pytest.raises(errors.OutOfExtent):
            check_time_range(a, b, extent)
    else:
        check_time_range(a, b, extent)


def test_parse_day_says_what_is_expected() -> None:
    assert parse_day("1985-06-01T12:00:00Z", "start") == date(1985, 6, 1)
    with pytest.raises(errors.InvalidTimeRange, match="ISO 8601"):
        parse_day("yesterday", "start")


def test_glofas_rule_needs_thirty_percent_of_members() -> None:
    thresholds = np.array([[10.0, 20.0, 40.0]])
    members = 10
    # 3 of 10 members above the 5-year level (30%), 2 of 10 above the 20-year level.
    peaks = np.array([[5.0]] * 5 + [[15.0]] * 2 + [[25.0]] * 1 + [[50.0]] * 2)
    assert peaks.shape == (members, 1)
    prob, levels = issue_warnings(peaks, thresholds, [2, 5, 20])
    np.testing.assert_allclose(prob, [[0.5, 0.3, 0.2]])
    assert ALERT_PROBABILITY == 0.3
    assert levels == ["high"]
    _, none = issue_warnings(np.full((10, 1), 9.9), thresholds, [2, 5, 20])
    assert none == ["none"]
