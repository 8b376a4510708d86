"""Checks of client-controlled input, shared by every capability (validate at the edge
of core once, so no adapter repeats them)."""

from __future__ import annotations

import math
from datetime import date, datetime

import numpy as np

from twinmesh.core.errors import InvalidParameter, InvalidTimeRange, OutOfExtent
from twinmesh.core.twin import BBox

__all__ = ["parse_day", "check_time_range", "check_bbox", "check_int", "check_factor"]


def parse_day(value: date | datetime | str | np.datetime64, name: str) -> date:
    """A calendar day from a date, datetime, numpy datetime64 or ISO 8601 string."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, np.datetime64):
        return value.astype("datetime64[D]").item()
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).date()
    except ValueError:
        raise InvalidTimeRange(
            f"{name} {value!r} is not a date: use ISO 8601, e.g. 1985-06-01"
        ) from None


def check_time_range(start: date, end: date, extent: tuple[date, date]) -> None:
    """``start <= end`` and both inside the twin's record."""
    if start > end:
        raise InvalidTimeRange(
            f"time range is inverted: start {start} is after end {end}; swap them"
        )
    if start < extent[0] or end > extent[1]:
        raise OutOfExtent(
            f"time range {start}/{end} is outside the twin's record {extent[0]}/{extent[1]}"
        )


def check_bbox(bbox: BBox | list[float], extent: BBox) -> BBox:
    """A well-formed WGS84 bbox that overlaps the twin's extent."""
    if len(bbox) != 4:
        raise InvalidParameter(f"bbox needs 4 numbers (west, south, east, north), got {len(bbox)}")
    w, s, e, n = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise InvalidParameter("bbox values must be finite numbers")
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
        raise InvalidParameter(f"bbox {bbox} is not in WGS84 degrees (lon ±180, lat ±90)")
    if w > e or s > n:
        raise InvalidParameter(f"bbox {bbox} is inverted: west must be <= east and south <= north")
    ew, es, ee, en = extent
    if e < ew or w > ee or n < es or s > en:
        raise OutOfExtent(f"bbox {list(bbox)} does not overlap the twin's extent {list(extent)}")
    return (w, s, e, n)


def check_int(value: int, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidParameter(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise InvalidParameter(f"{name} must be between {low} and {high}, got {value}")
    return int(value)


def check_factor(value: float, name: str, low: float = 0.0, high: float = 10.0) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidParameter(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or not low <= v <= high:
        raise InvalidParameter(f"{name} must be between {low} and {high}, got {value}")
    return v
