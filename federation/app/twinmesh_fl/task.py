"""A partner's local learning task: its exported data split into a training period and a
held-out period (the last quarter of its record), as model features and runoff."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .model import features

__all__ = ["LocalData", "load_local_data", "WARM_UP_DAYS"]

#: Days at the start of the record left out of training while the features warm up.
WARM_UP_DAYS = 90


@dataclass(frozen=True)
class LocalData:
    partner: str
    x_train: np.ndarray  # (samples, features)
    y_train: np.ndarray  # (samples,) runoff mm/day
    x_test: np.ndarray
    y_test: np.ndarray
    #: Per region: (features, runoff) of the held-out period, for per-series NSE.
    test_series: list[tuple[np.ndarray, np.ndarray]]
    #: First and last day of the held-out period (days since 1970-01-01).
    held_out_days: tuple[int, int]

    @property
    def samples(self) -> int:
        return int(np.isfinite(self.y_train).sum())


def load_local_data(data_dir: str | Path) -> LocalData:
    """Read ``data.npz`` + ``partner.json`` of a partner's directory and split them."""
    data_dir = Path(data_dir)
    meta = json.loads((data_dir / "partner.json").read_text())
    held_out = float(meta.get("held_out_fraction", 0.5))
    with np.load(data_dir / "data.npz") as data:
        p, e = data["precipitation_mm"], data["pet_mm"]
        t, q = data["temperature_c"], data["runoff_mm"]
        days = data["days"]
    x, _ = features(p, e, t)  # (region, t, feature)
    n = q.shape[-1]
    split = int(round(n * (1.0 - held_out)))
    x_tr = x[:, WARM_UP_DAYS:split].reshape(-1, x.shape[-1])
    y_tr = q[:, WARM_UP_DAYS:split].reshape(-1)
    x_te = x[:, split:].reshape(-1, x.shape[-1])
    y_te = q[:, split:].reshape(-1)
    series = [(x[k, split:], q[k, split:]) for k in range(q.shape[0])]
    ok = np.isfinite(y_tr)
    held = (int(days[split]), int(days[-1]))
    return LocalData(str(meta["partner"]), x_tr[ok], y_tr[ok], x_te, y_te, series, held)
