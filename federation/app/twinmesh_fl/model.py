"""The federated discharge model: a small numpy network mapping recursive forcing
features to runoff (mm/day), behind one interface a partner could reimplement with
another framework (PyTorch, scikit-learn): parameters as named numpy arrays, ``fit``
on local data, ``predict``/``evaluate``.

Why forcing-only: the twin's forecast runs a model from a state on ensemble forcing
(precipitation, PET, temperature), without observed discharge ahead of the issue day.
The features are recursive (a degree-day snow store and exponentially weighted means of
liquid water input, PET and temperature at several time scales), so the model state is
a short vector and a forecast continues from it exactly like GR4J's stores.

This module imports only numpy: it runs inside Flower's processes (the flower venv) and
inside twinmesh's runner (the project venv).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "KIND",
    "FEATURES",
    "MLPRunoffModel",
    "ForcingState",
    "features",
    "nse",
    "kge",
]

#: The model kind in twinmesh's registry (its runner has the same name).
KIND = "federated-mlp"

#: Degree-day factor of the fixed snow routine (mm per degC per day).
_MELT_MM_PER_DEGC = 3.0
#: Capacities (mm) of the fixed production stores (GR4J's production function): one
#: per soil depth, each yields the water that leaves the soil.
_STORE_CAPACITIES_MM = (50.0, 150.0, 400.0)
#: Time constants (days) of the exponentially weighted means of each store's yield.
_WATER_TAUS = (1.0, 3.0, 10.0, 30.0, 90.0)
_PET_TAUS = (8.0, 32.0, 128.0)
_TEMP_TAUS = (8.0, 64.0)
#: Fixed feature scales: identical at every partner (no data statistics leave a site).
_WATER_SCALE_MM = 5.0
_PET_SCALE_MM = 3.0
_TEMP_SCALE_C = 10.0

FEATURES = (
    [f"yield_{int(c)}mm_ewm_{int(t)}d" for c in _STORE_CAPACITIES_MM for t in _WATER_TAUS]
    + [f"pet_ewm_{int(t)}d" for t in _PET_TAUS]
    + [f"temperature_ewm_{int(t)}d" for t in _TEMP_TAUS]
    + ["snow_store"]
)


@dataclass(frozen=True)
class ForcingState:
    """The recursive state after the last day: snow store (mm) and every weighted mean
    (member-shaped when forcing had members)."""

    snow_mm: np.ndarray
    soil_mm: np.ndarray  # (..., len(_STORE_CAPACITIES_MM))
    water: np.ndarray  # (..., stores * len(_WATER_TAUS))
    pet: np.ndarray
    temperature: np.ndarray


def _initial_state(shape: tuple[int, ...]) -> ForcingState:
    return ForcingState(
        snow_mm=np.zeros(shape),
        soil_mm=np.broadcast_to(0.5 * np.asarray(_STORE_CAPACITIES_MM), shape + (3,)).copy(),
        water=np.full(shape + (len(_STORE_CAPACITIES_MM) * len(_WATER_TAUS),), 1.0),
        pet=np.full(shape + (len(_PET_TAUS),), 1.5),
        temperature=np.full(shape + (len(_TEMP_TAUS),), 8.0),
    )


def features(
    precipitation_mm: np.ndarray,
    pet_mm: np.ndarray,
    temperature_c: np.ndarray,
    state: ForcingState | None = None,
) -> tuple[np.ndarray, ForcingState]:
    """Scaled features (..., t, feature) of daily forcing (..., t) and the state after
    the last day. ``state`` continues from an earlier call (same leading shape or one
    that broadcasts, e.g. a region's state for every member)."""
    p = np.asarray(precipitation_mm, dtype=np.float64)
    e = np.asarray(pet_mm, dtype=np.float64)
    tc = np.asarray(temperature_c, dtype=np.float64)
    lead = p.shape[:-1]
    s = state or _initial_state(lead)
    snow = np.broadcast_to(s.snow_mm, lead).copy()
    soil = np.broadcast_to(s.soil_mm, lead + s.soil_mm.shape[-1:]).copy()
    cap = np.asarray(_STORE_CAPACITIES_MM)
    water = np.broadcast_to(s.water, lead + s.water.shape[-1:]).copy()
    pet = np.broadcast_to(s.pet, lead + s.pet.shape[-1:]).copy()
    temp = np.broadcast_to(s.temperature, lead + s.temperature.shape[-1:]).copy()
    aw = np.tile(1.0 / np.asarray(_WATER_TAUS), len(_STORE_CAPACITIES_MM))
    rep = len(_WATER_TAUS)
    ap = 1.0 / np.asarray(_PET_TAUS)
    at = 1.0 / np.asarray(_TEMP_TAUS)
    n = p.shape[-1]
    out = np.empty(lead + (n, len(FEATURES)))
    nw, npet, nt = aw.size, len(_PET_TAUS), len(_TEMP_TAUS)
    for i in range(n):
        pi, ti = p[..., i], tc[..., i]
        cold = ti <= 0.0
        snow = snow + np.where(cold, pi, 0.0)
        melt = np.minimum(snow, _MELT_MM_PER_DEGC * np.maximum(ti, 0.0))
        snow = snow - melt
        liquid = np.where(cold, 0.0, pi) + melt
        produced, soil = _production(liquid, e[..., i], soil, cap)
        water = water + aw * (np.repeat(produced, rep, axis=-1) - water)
        pet = pet + ap * (e[..., i][..., None] - pet)
        temp = temp + at * (ti[..., None] - temp)
        out[..., i, :nw] = water / _WATER_SCALE_MM
        out[..., i, nw : nw + npet] = pet / _PET_SCALE_MM
        out[..., i, nw + npet : nw + npet + nt] = temp / _TEMP_SCALE_C
        out[..., i, -1] = snow / (10 * _WATER_SCALE_MM)
    return out, ForcingState(snow, soil, water, pet, temp)


def _production(
    water_mm: np.ndarray, pet_mm: np.ndarray, soil: np.ndarray, cap: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One day of GR4J's production store for every capacity (Perrin et al. 2003): the
    water that leaves the soil (effective rainfall + percolation) and the new store."""
    p = water_mm[..., None]
    e = pet_mm[..., None]
    net_p = np.maximum(p - e, 0.0)
    net_e = np.maximum(e - p, 0.0)
    ratio = soil / cap
    tp = np.tanh(net_p / cap)
    ps = cap * (1 - ratio**2) * tp / (1 + ratio * tp)
    te = np.tanh(net_e / cap)
    es = soil * (2 - ratio) * te / (1 + (1 - ratio) * te)
    soil = np.clip(soil + ps - es, 0.0, cap)
    perc = soil * (1 - (1 + (4 * soil / (9 * cap)) ** 4) ** -0.25)
    soil = soil - perc
    return net_p - ps + perc, soil


def nse(sim: np.ndarray, obs: np.ndarray) -> float:
    """Nash-Sutcliffe efficiency over the finite pairs."""
    ok = np.isfinite(sim) & np.isfinite(obs)
    o, s = obs[ok], sim[ok]
    if o.size < 2 or np.var(o) == 0:
        return float("nan")
    return float(1.0 - np.sum((s - o) ** 2) / np.sum((o - o.mean()) ** 2))


def kge(sim: np.ndarray, obs: np.ndarray) -> float:
    """Kling-Gupta efficiency (2009) over the finite pairs."""
    ok = np.isfinite(sim) & np.isfinite(obs)
    o, s = obs[ok], sim[ok]
    if o.size < 2 or np.std(o) == 0 or np.mean(o) == 0 or np.std(s) == 0:
        return float("nan")
    r = float(np.corrcoef(s, o)[0, 1])
    alpha = float(np.std(s) / np.std(o))
    beta = float(np.mean(s) / np.mean(o))
    return float(1.0 - np.sqrt((r - 1) ** 2 + (alpha - 1) ** 2 + (beta - 1) ** 2))


class MLPRunoffModel:
    """One hidden layer (tanh) from the forcing features to runoff (mm/day), trained on
    squared error (what NSE measures) with Adam; FedProx adds ``mu/2 |w - w_global|^2``."""

    PARAMETER_NAMES = ("w1", "b1", "w2", "b2")

    def __init__(self, hidden: int = 16, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        n_in = len(FEATURES)
        self.hidden = hidden
        self.params: dict[str, np.ndarray] = {
            "w1": rng.normal(0.0, 1.0 / np.sqrt(n_in), (n_in, hidden)),
            "b1": np.zeros(hidden),
            "w2": rng.normal(0.0, 1.0 / np.sqrt(hidden), (hidden, 1)),
            "b2": np.full(1, 1.0),
        }

    # -- the federation interface -------------------------------------------------------
    def get_parameters(self) -> list[np.ndarray]:
        return [self.params[k].copy() for k in self.PARAMETER_NAMES]

    def set_parameters(self, arrays: list[np.ndarray]) -> None:
        if len(arrays) != len(self.PARAMETER_NAMES):
            raise ValueError(f"expected {len(self.PARAMETER_NAMES)} arrays, got {len(arrays)}")
        for name, value in zip(self.PARAMETER_NAMES, arrays, strict=True):
            if value.shape != self.params[name].shape:
                raise ValueError(
                    f"parameter {name} has shape {value.shape}, expected {self.params[name].shape}"
                )
            self.params[name] = np.asarray(value, dtype=np.float64).copy()

    @classmethod
    def from_parameters(cls, arrays: list[np.ndarray]) -> MLPRunoffModel:
        model = cls(hidden=int(arrays[0].shape[1]))
        model.set_parameters(arrays)
        return model

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        h = np.tanh(x @ self.params["w1"] + self.params["b1"])
        return np.maximum((h @ self.params["w2"] + self.params["b2"])[..., 0], 0.0)

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        steps: int = 300,
        learning_rate: float = 0.01,
        proximal_mu: float = 0.0,
        seed: int = 0,
        batch: int = 512,
    ) -> float:
        """Adam on mini-batches of (features, runoff); returns the last batch loss."""
        ok = np.isfinite(y) & np.all(np.isfinite(x), axis=-1)
        x, y = x[ok], y[ok]
        if y.size == 0:
            raise ValueError("no finite training samples")
        rng = np.random.default_rng(seed)
        anchor = {k: v.copy() for k, v in self.params.items()}
        m = {k: np.zeros_like(v) for k, v in self.params.items()}
        v2 = {k: np.zeros_like(v) for k, v in self.params.items()}
        b1, b2, eps = 0.9, 0.999, 1e-8
        loss = float("nan")
        for step in range(1, steps + 1):
            idx = rng.integers(0, y.size, min(batch, y.size))
            xb, yb = x[idx], y[idx]
            z = xb @ self.params["w1"] + self.params["b1"]
            h = np.tanh(z)
            out = (h @ self.params["w2"] + self.params["b2"])[:, 0]
            err = out - yb
            loss = float(np.mean(err**2))
            g_out = (2.0 / yb.size) * err[:, None]
            grads = {
                "w2": h.T @ g_out,
                "b2": g_out.sum(axis=0),
            }
            g_h = (g_out @ self.params["w2"].T) * (1.0 - h**2)
            grads["w1"] = xb.T @ g_h
            grads["b1"] = g_h.sum(axis=0)
            for k, g in grads.items():
                if proximal_mu:
                    g = g + proximal_mu * (self.params[k] - anchor[k])
                m[k] = b1 * m[k] + (1 - b1) * g
                v2[k] = b2 * v2[k] + (1 - b2) * g * g
                mh = m[k] / (1 - b1**step)
                vh = v2[k] / (1 - b2**step)
                self.params[k] = self.params[k] - learning_rate * mh / (np.sqrt(vh) + eps)
        return loss

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        sim = self.predict_features(x)
        ok = np.isfinite(y)
        return {
            "nse": nse(sim[ok], y[ok]),
            "kge": kge(sim[ok], y[ok]),
            "mse": float(np.mean((sim[ok] - y[ok]) ** 2)) if ok.any() else float("nan"),
        }

    # -- running as a twin model -------------------------------------------------------
    def run(
        self,
        precipitation_mm: np.ndarray,
        pet_mm: np.ndarray,
        temperature_c: np.ndarray,
        state: Any = None,
    ) -> tuple[np.ndarray, ForcingState]:
        """Runoff (mm/day, the forcing's shape) and the state after the last day."""
        x, end = features(precipitation_mm, pet_mm, temperature_c, state)
        return self.predict_features(x), end
