"""Goodness-of-fit scores for simulated against observed streamflow.

Why: calibration maximises one of them and the twin reports both for the validation period.

What: the Nash-Sutcliffe efficiency (Nash & Sutcliffe, 1970) and the Kling-Gupta efficiency in
its original form (Gupta et al., 2009, J. Hydrol. 377:80-91). Days where the observation is NaN
are ignored (gauges have gaps); a NaN in the simulation at a valid observation gives NaN.
"""

from __future__ import annotations

import numpy as np

__all__ = ["nse", "kge", "kge_components"]


def _valid_pairs(sim: np.ndarray, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sim_arr = np.asarray(sim, dtype=np.float64)
    obs_arr = np.asarray(obs, dtype=np.float64)
    if sim_arr.ndim != 1 or obs_arr.ndim != 1:
        raise ValueError(
            f"sim and obs must be 1-D series, got shapes {sim_arr.shape} and {obs_arr.shape}"
        )
    if sim_arr.shape != obs_arr.shape:
        raise ValueError(
            f"sim and obs must have the same length, got {sim_arr.size} and {obs_arr.size}"
        )
    valid = ~np.isnan(obs_arr)
    if int(valid.sum()) < 2:
        raise ValueError(
            f"need at least 2 non-NaN observations to score a simulation, got {int(valid.sum())}"
        )
    return sim_arr[valid], obs_arr[valid]


def nse(sim: np.ndarray, obs: np.ndarray) -> float:
    """Nash-Sutcliffe efficiency, 1 - sum((sim - obs)^2) / sum((obs - mean(obs))^2).

    1 is perfect, 0 is no better than the mean of the observations. Raises ValueError if the
    observations are constant (the score is undefined).
    """
    s, o = _valid_pairs(sim, obs)
    denom = float(np.sum((o - o.mean()) ** 2))
    if denom == 0.0:
        raise ValueError("NSE is undefined when the observations are constant")
    return 1.0 - float(np.sum((s - o) ** 2)) / denom


def kge_components(sim: np.ndarray, obs: np.ndarray) -> tuple[float, float, float]:
    """The three KGE components (r, alpha, beta): linear correlation, ratio of standard
    deviations sigma_sim/sigma_obs and ratio of means mu_sim/mu_obs.

    A constant simulation has no defined correlation; r is then taken as 0 so that the score
    stays finite for an optimiser. Raises ValueError if the observations are constant or have a
    zero mean.
    """
    s, o = _valid_pairs(sim, obs)
    sd_o = float(o.std())
    mean_o = float(o.mean())
    if sd_o == 0.0:
        raise ValueError("KGE is undefined when the observations are constant")
    if mean_o == 0.0:
        raise ValueError("KGE is undefined when the observations have a zero mean")
    sd_s = float(s.std())
    r = 0.0 if sd_s == 0.0 else float(np.mean((s - s.mean()) * (o - mean_o)) / (sd_s * sd_o))
    return r, sd_s / sd_o, float(s.mean()) / mean_o


def kge(sim: np.ndarray, obs: np.ndarray) -> float:
    """Kling-Gupta efficiency (Gupta et al. 2009): 1 - sqrt((r-1)^2 + (alpha-1)^2 + (beta-1)^2).

    1 is perfect; the mean of the observations as a simulation scores 1 - sqrt(2) ~ -0.41.
    """
    r, alpha, beta = kge_components(sim, obs)
    return 1.0 - float(np.sqrt((r - 1.0) ** 2 + (alpha - 1.0) ** 2 + (beta - 1.0) ** 2))
