"""Model runners by model kind: how a registered model version turns forcing into
discharge. Capabilities ask for the runner of the current model's kind instead of
naming a model; a new kind (e.g. a model trained with Flower) adds a runner here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from twinmesh.core.errors import InvalidParameter
from twinmesh.core.hydrology.gr4j import GR4JParams, run_gr4j
from twinmesh.core.hydrology.snow import CemaNeigeParams, run_gr4j_snow

if TYPE_CHECKING:
    from twinmesh.core.models import ModelVersion

__all__ = [
    "ModelRunner",
    "GR4JRunner",
    "GR4JCemaNeigeRunner",
    "FederatedMLPRunner",
    "RUNNERS",
    "runner_for",
]


class ModelRunner(Protocol):
    """Daily runoff of one region from precipitation, PET (mm/day) and air temperature
    (degC; models with a snow routine need it)."""

    kind: str

    def run(
        self,
        model: ModelVersion,
        region_id: str,
        precipitation_mm: np.ndarray,
        pet_mm: np.ndarray,
        state: Any = None,
        *,
        temperature_c: np.ndarray | None = None,
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
        *,
        temperature_c: np.ndarray | None = None,
    ) -> tuple[np.ndarray, Any]:
        q_mm, end_state = run_gr4j(precipitation_mm, pet_mm, _gr4j_params(model, region_id), state)
        return np.asarray(q_mm), end_state


class GR4JCemaNeigeRunner:
    """GR4J behind the CemaNeige snow routine (Valery et al. 2014, one elevation band):
    the version's per-region parameters x1..x4, ctg, kf_mm_per_degc_day and the
    catchment constant g_threshold_mm."""

    kind = "gr4j-cemaneige"

    def run(
        self,
        model: ModelVersion,
        region_id: str,
        precipitation_mm: np.ndarray,
        pet_mm: np.ndarray,
        state: Any = None,
        *,
        temperature_c: np.ndarray | None = None,
    ) -> tuple[np.ndarray, Any]:
        if temperature_c is None:
            raise InvalidParameter(
                f"model {model.ref} has a snow routine and needs air temperature"
            )
        p = model.parameters_for(region_id)
        snow = CemaNeigeParams(p["ctg"], p["kf_mm_per_degc_day"])
        q_mm, end_state = run_gr4j_snow(
            precipitation_mm,
            temperature_c,
            pet_mm,
            _gr4j_params(model, region_id),
            snow,
            p["g_threshold_mm"],
            state,
        )
        return np.asarray(q_mm), end_state


class FederatedMLPRunner:
    """The data-driven model trained with Flower (``twinmesh.federation``): a small
    network on recursive forcing features; its weights are the version's parameters
    (``w1.0000`` ...), one set for every region (it predicts runoff depth)."""

    kind = "federated-mlp"

    def run(
        self,
        model: ModelVersion,
        region_id: str,
        precipitation_mm: np.ndarray,
        pet_mm: np.ndarray,
        state: Any = None,
        *,
        temperature_c: np.ndarray | None = None,
    ) -> tuple[np.ndarray, Any]:
        from twinmesh.federation.registry import model_from_parameters

        if temperature_c is None:
            raise InvalidParameter(f"model {model.ref} needs air temperature (snow routine)")
        net = model_from_parameters(model.parameters_for(region_id))
        return net.run(precipitation_mm, pet_mm, temperature_c, state)


def _gr4j_params(model: ModelVersion, region_id: str) -> GR4JParams:
    p = model.parameters_for(region_id)
    return GR4JParams(p["x1_mm"], p["x2_mm"], p["x3_mm"], p["x4_days"])


_ALL: list[ModelRunner] = [GR4JRunner(), GR4JCemaNeigeRunner(), FederatedMLPRunner()]
RUNNERS: dict[str, ModelRunner] = {r.kind: r for r in _ALL}


def runner_for(model: ModelVersion) -> ModelRunner:
    try:
        return RUNNERS[model.kind.lower()]
    except KeyError:
        raise InvalidParameter(
            f"model {model.ref} is of kind {model.kind!r}, which this twinmesh cannot run; "
            f"it runs: {', '.join(RUNNERS)}"
        ) from None
