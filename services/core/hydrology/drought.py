"""Meteorological drought: the Standardized Precipitation Index and its severity classes.

Why: the twin reports drought alongside floods; SPI (McKee et al., 1993) is the WMO-recommended
index and needs only monthly precipitation.

What: ``spi_monthly`` delegates to ``climate_indices`` (BSD-3-Clause) with a gamma distribution
fitted per calendar month over a calibration period; ``drought_level`` maps an SPI value to the
usual classes (none > -1 >= moderate > -1.5 >= severe > -2 >= extreme).

``climate_indices`` is imported lazily: the import takes about a second, and on first import the
library installs its own handler on the root logger and sets the root level to INFO. The lazy
import puts the root logger's handlers and level back as they were, so the application keeps
control of its logging. Its statistical warnings (e.g. ``ShortCalibrationWarning`` for a
calibration period under 30 years) are passed through as Python warnings.
"""

from __future__ import annotations

import functools
import logging
import math
from types import ModuleType

import numpy as np

__all__ = ["DROUGHT_LEVELS", "spi_monthly", "drought_level"]

#: Drought classes from no drought to the most severe, as returned by ``drought_level``.
DROUGHT_LEVELS: tuple[str, str, str, str] = ("none", "moderate", "severe", "extreme")


@functools.cache
def _climate_indices() -> tuple[ModuleType, ModuleType]:
    """Import ``climate_indices`` without letting it reconfigure the root logger."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from climate_indices import compute, indices
    finally:
        root.handlers = handlers
        root.setLevel(level)
    return indices, compute


def spi_monthly(
    precip_mm_monthly: np.ndarray,
    first_year: int,
    scale_months: int = 3,
    calibration_years: tuple[int, int] | None = None,
) -> np.ndarray:
    """SPI of monthly precipitation totals (mm), accumulated over ``scale_months`` months.

    The series starts in January of ``first_year``; a trailing partial year is allowed. The gamma
    distribution of each calendar month is fitted on ``calibration_years`` (inclusive, default:
    the whole record; 30 years or more are recommended). The result has the length of the input;
    the first ``scale_months - 1`` values are NaN, as is any window containing a missing month.
    """
    precip = np.asarray(precip_mm_monthly, dtype=np.float64)
    if precip.ndim != 1:
        raise ValueError(f"precip_mm_monthly must be a 1-D series, got shape {precip.shape}")
    if precip.size < 12:
        raise ValueError(f"need at least 12 months of precipitation, got {precip.size}")
    if np.any(precip < 0):
        raise ValueError("precip_mm_monthly contains negative values")
    if not 1 <= scale_months <= precip.size:
        raise ValueError(
            f"scale_months must lie in 1..{precip.size} (the series length), got {scale_months}"
        )
    last_year = first_year + math.ceil(precip.size / 12) - 1
    start, end = calibration_years if calibration_years is not None else (first_year, last_year)
    if not first_year <= start <= end <= last_year:
        raise ValueError(
            f"calibration_years {start}-{end} must be ordered and lie within the record "
            f"{first_year}-{last_year}"
        )
    indices, compute = _climate_indices()
    result = indices.spi(
        precip,
        scale_months,
        indices.Distribution.gamma,
        first_year,
        start,
        end,
        compute.Periodicity.monthly,
    )
    return np.asarray(result, dtype=np.float64)


def drought_level(spi: float) -> str:
    """Drought class of an SPI value: "none" (> -1), "moderate" (-1.5 < spi <= -1),
    "severe" (-2 < spi <= -1.5) or "extreme" (<= -2). NaN raises ValueError."""
    value = float(spi)
    if math.isnan(value):
        raise ValueError("SPI is NaN (not enough months accumulated or missing data)")
    if value > -1.0:
        return DROUGHT_LEVELS[0]
    if value > -1.5:
        return DROUGHT_LEVELS[1]
    if value > -2.0:
        return DROUGHT_LEVELS[2]
    return DROUGHT_LEVELS[3]
