"""Model runners by model kind: how a registered model version turns forcing into
discharge. Capabilities ask for the runner of the current model's kind instead of
naming a model; a new kind (e.g. a model trained with Flower) adds a runner here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from twinmesh.core.errors import InvalidParameter
from twinmesh.core.hydrology.gr4j import GR4JParams, run_gr4j

if TYPE_CHECKING:
    from twinmesh.core.models import ModelVersion

__all__ = ["ModelRunner", "GR4JRunner", "RUNNERS", "runner_for"]


class ModelRunner(Protocol):
    """Daily runoff of one region from precipitation and PET (mm/day)."""

    kind: str

    def run(
        self,
        model: ModelVersion,
        region_id: str,
        precipitation_mm: np.ndarray,
        pet_mm: np.ndarray,
        state: Any = None,
    ) -> tuple[np.ndarray, Any]:
        """Runoff (mm/day; same shape as the forcing, members first if 2-D) and the
        model state after the last day, to start a forecast from."""
        ...


class GR4JRunner:
    """GR4J (Perrin et al. 2003) with the version's per-region parameters."""

    kind = "gr4j"

    def run(
        self,
        model: ModelVersion,
        region_id: str,
        precipitation_mm: np.ndarray,
        pet_mm: np.ndarray,
        state: Any = None,
    ) -> tuple[np.ndarray, Any]:
        p = model.parameters_for(region_id)
        params = GR4JParams(p["x1_mm"], p["x2_mm"], p["x3_mm"], p["x4_days"])
        q_mm, end_state = run_gr4j(precipitation_mm, pet_mm, params, state=state)
        return np.asarray(q_mm), end_state


RUNNERS: dict[str, ModelRunner] = {r.kind: r for r in [GR4JRunner()]}


def runner_for(model: ModelVersion) -> ModelRunner:
    try:
        return RUNNERS[model.kind.lower()]
    except KeyError:
        raise InvalidParameter(
            f"model {model.ref} is of kind {model.kind!r}, which this twinmesh cannot run; "
            f"it runs: {', '.join(RUNNERS)}"
        ) from None
