"""Flood return-period thresholds from annual maxima, the way GloFAS defines its warning levels.

Why: the twin flags forecast discharge that exceeds the 2-, 5- and 20-year return levels of the
catchment's own (simulated or observed) climatology, like the Global Flood Awareness System.

What: annual maxima over complete calendar years, a Gumbel (EV1) distribution fitted to them by
the method of L-moments (Hosking, 1990: scale = l2 / ln 2, location = l1 - gamma * scale, with
unbiased probability-weighted moments), and the return level of period T years,
x_T = location - scale * ln(-ln(1 - 1/T)). L-moments are preferred to maximum likelihood because
they are robust on the short records (tens of years) a twin typically has.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["MIN_YEARS", "GumbelFit", "annual_maxima", "fit_gumbel", "return_levels"]

#: Fewest annual maxima a Gumbel fit is attempted on.
MIN_YEARS = 3

_EULER_GAMMA = 0.5772156649015329


@dataclass(frozen=True)
class GumbelFit:
    """A fitted Gumbel (EV1) distribution, in the units of the data."""

    location: float
    scale: float

    def return_level(self, period_years: float) -> float:
        """The value exceeded on average once every ``period_years`` years (period > 1)."""
        if not period_years > 1:
            raise ValueError(f"a return period must be > 1 year, got {period_years}")
        return self.location - self.scale * float(np.log(-np.log(1.0 - 1.0 / period_years)))


def annual_maxima(values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Maximum of ``values`` in each complete calendar year, in year order.

    ``times`` are datetime64 stamps of a daily (or finer) series. A year is complete when every
    one of its days has at least one non-NaN value; incomplete years (typically the first and
    last of a record, or years with gauge gaps) are dropped so they cannot bias the maxima low.
    """
    vals = np.asarray(values, dtype=np.float64)
    stamps = np.asarray(times)
    if vals.ndim != 1 or vals.shape != stamps.shape:
        raise ValueError(
            f"values and times must be 1-D and of the same length, got {vals.shape} "
            f"and {stamps.shape}"
        )
    if not np.issubdtype(stamps.dtype, np.datetime64):
        raise ValueError(f"times must be numpy datetime64, got dtype {stamps.dtype}")
    valid = ~np.isnan(vals) & ~np.isnat(stamps)
    vals = vals[valid]
    days = stamps[valid].astype("datetime64[D]")
    years = days.astype("datetime64[Y]").astype(np.int64) + 1970
    maxima = []
    for year in np.unique(years):
        in_year = years == year
        days_in_year = 366 if calendar.isleap(int(year)) else 365
        if np.unique(days[in_year]).size == days_in_year:
            maxima.append(float(vals[in_year].max()))
    return np.asarray(maxima, dtype=np.float64)


def fit_gumbel(annual_maxima: np.ndarray) -> GumbelFit:
    """Fit a Gumbel distribution to annual maxima by the method of L-moments."""
    x = np.sort(np.asarray(annual_maxima, dtype=np.float64).ravel())
    if x.size < MIN_YEARS:
        raise ValueError(
            f"need at least {MIN_YEARS} annual maxima (complete years) to fit a Gumbel "
            f"distribution, got {x.size}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("annual maxima must be finite numbers")
    n = x.size
    b0 = x.mean()
    b1 = float(np.sum(np.arange(n) / (n - 1) * x)) / n
    l1 = b0
    l2 = 2.0 * b1 - b0
    scale = l2 / np.log(2.0)
    return GumbelFit(location=float(l1 - _EULER_GAMMA * scale), scale=float(scale))


def return_levels(
    annual_maxima: np.ndarray, periods: Iterable[int] = (2, 5, 20)
) -> dict[int, float]:
    """Return levels for the given return periods (years), from a Gumbel fit to annual maxima.

    The result maps each period to its level, in the units of ``annual_maxima``.
    """
    fit = fit_gumbel(annual_maxima)
    return {int(period): fit.return_level(period) for period in periods}
