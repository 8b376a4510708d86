"""Scores of a warning system against what happened: the contingency table of yes/no
warnings and the Brier score of exceedance probabilities.

Why: a warning service is only worth trusting when its hit rate, its false alarms and
the value of its probabilities are measured on days it was not fitted to, and compared
with simple references (persistence, climatology, a perfect-forecast bound).

What: for paired issue days, a warning w (bool), a probability p in [0, 1] and an
observed event o (bool):

* hits H = #(w and o), misses M = #(not w and o), false alarms F = #(w and not o),
  correct negatives N = #(not w and not o);
* probability of detection POD = H / (H + M), false alarm ratio FAR = F / (H + F),
  critical success index CSI = H / (H + M + F) (Jolliffe & Stephenson 2012, ch. 3);
  a ratio whose denominator is 0 is NaN (undefined, not 0);
* Brier score BS = mean((p - o)^2); against a climatological probability c the
  reference score is BS_c = mean((c - o)^2) and the Brier skill score
  BSS = 1 - BS / BS_c (1 perfect, 0 no better than climatology, < 0 worse).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["Contingency", "contingency", "brier_score", "brier_skill_score"]


def _ratio(num: int, den: int) -> float:
    return float(num) / den if den else float("nan")


@dataclass(frozen=True)
class Contingency:
    """The 2x2 table of warnings against events, and the scores read from it."""

    hits: int
    misses: int
    false_alarms: int
    correct_negatives: int

    @property
    def pod(self) -> float:
        return _ratio(self.hits, self.hits + self.misses)

    @property
    def far(self) -> float:
        return _ratio(self.false_alarms, self.hits + self.false_alarms)

    @property
    def csi(self) -> float:
        return _ratio(self.hits, self.hits + self.misses + self.false_alarms)

    @property
    def events(self) -> int:
        return self.hits + self.misses

    @property
    def warnings(self) -> int:
        return self.hits + self.false_alarms

    def to_dict(self) -> dict[str, Any]:
        """Counts and scores; undefined scores are None (JSON has no NaN)."""
        d: dict[str, Any] = asdict(self)
        for name in ("pod", "far", "csi"):
            value = getattr(self, name)
            d[name] = None if np.isnan(value) else round(value, 4)
        return d


def _as_bool(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D series, got shape {arr.shape}")
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must hold booleans (or 0/1)")
        arr = arr.astype(bool)
    return arr


def contingency(warned: Any, observed: Any) -> Contingency:
    """The contingency table of paired yes/no warnings and observed events."""
    w = _as_bool("warned", warned)
    o = _as_bool("observed", observed)
    if w.shape != o.shape:
        raise ValueError(f"warned and observed differ in length: {w.size} and {o.size}")
    return Contingency(
        hits=int(np.sum(w & o)),
        misses=int(np.sum(~w & o)),
        false_alarms=int(np.sum(w & ~o)),
        correct_negatives=int(np.sum(~w & ~o)),
    )


def brier_score(probability: Any, observed: Any) -> float:
    """Mean squared difference between forecast probabilities and 0/1 outcomes."""
    p = np.asarray(probability, dtype=np.float64)
    o = _as_bool("observed", observed).astype(np.float64)
    if p.shape != o.shape:
        raise ValueError(f"probability and observed differ in length: {p.size} and {o.size}")
    if p.size == 0:
        raise ValueError("the Brier score needs at least one forecast")
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    return float(np.mean((p - o) ** 2))


def brier_skill_score(probability: Any, observed: Any, climatology: float) -> float:
    """1 - BS / BS_clim, with the constant probability ``climatology`` as reference.

    NaN when the reference is perfect (it cannot be beaten or matched meaningfully).
    """
    if not 0.0 <= climatology <= 1.0:
        raise ValueError(f"climatology must be a probability in [0, 1], got {climatology}")
    o = _as_bool("observed", observed)
    reference = brier_score(np.full(o.shape, climatology), o)
    if reference == 0.0:
        return float("nan")
    return 1.0 - brier_score(probability, o) / reference
