"""Hand-off of a finished Flower run to core's model registry.

The ServerApp runs in Flower's environment, which cannot hold twinmesh's core (its
protobuf, fastapi and typer pins conflict), so it writes the trained parameters
(``model.npz``) and their provenance (``status.json``) to the run's output directory and
``twinmesh federation run`` registers them here, in the project's environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from twinmesh.core.engine import Engine
from twinmesh.core.models import ModelVersion
from twinmesh.federation.app.twinmesh_fl.model import KIND, MLPRunoffModel

__all__ = ["KIND", "parameters_from_model", "model_from_parameters", "register_run"]


def parameters_from_model(arrays: list[np.ndarray]) -> dict[str, float]:
    """The network's arrays as registry parameters: ``<array>.<flat index>``."""
    out: dict[str, float] = {}
    for name, array in zip(MLPRunoffModel.PARAMETER_NAMES, arrays, strict=True):
        for i, value in enumerate(np.asarray(array, dtype=np.float64).ravel()):
            out[f"{name}.{i:04d}"] = float(value)
    return out


def model_from_parameters(parameters: Mapping[str, float]) -> MLPRunoffModel:
    """The network back from registry parameters (hidden size = number of ``b1``)."""

    def flat(name: str) -> np.ndarray:
        keys = sorted(k for k in parameters if k.startswith(f"{name}."))
        return np.array([parameters[k] for k in keys], dtype=np.float64)

    b1 = flat("b1")
    hidden = b1.size
    w1 = flat("w1")
    arrays = [w1.reshape(-1, hidden), b1, flat("w2").reshape(hidden, 1), flat("b2")]
    return MLPRunoffModel.from_parameters(arrays)


def _day(n: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=int(n))).isoformat()


def register_run(
    engine: Engine,
    twin_ids: list[str],
    out_dir: Path,
    summary: Mapping[str, Any],
    *,
    approve: bool,
    trigger: Mapping[str, Any] | None = None,
) -> list[ModelVersion]:
    """Register the run's model as a new version of each twin, with its provenance:
    rounds, partners and their samples, validation skill per partner, app hash; and when
    the retraining trigger started it, the skill, threshold and window that did."""
    with np.load(out_dir / "model.npz") as data:
        arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
    parameters = parameters_from_model(arrays)
    validation: dict[str, dict[str, Any]] = dict(summary.get("validation", {}))
    weights = {p: v["samples"] for p, v in validation.items()}
    total = sum(weights.values()) or 1
    first = min((v["first_day"] for v in validation.values()), default=0)
    last = max((v["last_day"] for v in validation.values()), default=0)
    period = f"{_day(first)}/{_day(last)}"
    skill = {
        "validation": {
            "period": period,
            "nse": sum(v["nse"] * weights[p] for p, v in validation.items()) / total,
            "kge": sum(v["kge"] * weights[p] for p, v in validation.items()) / total,
        },
        "aggregate": "mean over partners weighted by held-out samples; each partner's held-out "
        "period is the last half of its record",
    }
    settings: dict[str, int | float | str | bool] = {
        "app_bundle_sha256": str(summary.get("app", "")),
        "flower_run_id": str(summary.get("run", "")),
        "proximal_mu": float(summary.get("proximal_mu", 0.0)),
        "local_steps": int(summary.get("local_steps", 0)),
        "learning_rate": float(summary.get("learning_rate", 0.0)),
        "seconds_per_round": round(float(summary.get("seconds_per_round", 0.0)), 2),
    }
    for partner, v in sorted(validation.items()):
        settings[f"validation_nse.{partner}"] = round(float(v["nse"]), 4)
        settings[f"validation_kge.{partner}"] = round(float(v["kge"]), 4)
        settings[f"validation_period.{partner}"] = f"{_day(v['first_day'])}/{_day(v['last_day'])}"
    if trigger is not None:
        for key in ("skill_nse", "threshold_nse", "window", "observations", "model_version"):
            value = trigger.get(key)
            if isinstance(value, int | float | str | bool):
                settings[f"trigger.{key}"] = value
    dropped = summary.get("dropped", [])
    why = (
        f" Retraining triggered: {trigger.get('reason', 'skill below the threshold')}."
        if trigger is not None
        else ""
    )
    provenance = {
        "training_data": [{"dataset": f"partner:{p}"} for p in sorted(summary["partners"])],
        "method": "federated training with Flower (deployment engine)"
        + (", retraining triggered by the skill on recent observations" if trigger else ""),
        "federated": {
            "rounds": int(summary["rounds"]),
            "partners": {p: int(n) for p, n in summary["partners"].items()},
            "strategy": str(summary["strategy"]),
        },
        "method_settings": settings,
        "notes": (
            f"Flower run {summary.get('run')}; partners kept their data on site. "
            + (f"Nodes dropped: {dropped}." if dropped else "No node dropped.")
            + why
        ),
    }
    return [
        engine.models.register(
            twin_id,
            kind=KIND,
            parameters=parameters,
            skill=skill,
            provenance=provenance,
            description="Runoff network trained with Flower across partner institutions",
            approve=approve,
        )
        for twin_id in twin_ids
    ]
