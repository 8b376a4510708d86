"""The ``federated_training`` job kind: a federated training run as a core job.

Registered under the ``twinmesh.job_kinds`` entry point (like openEO's
``openeo_graph``), so core's retraining trigger (``twinmesh.core.retraining``) submits
it by name without importing federation code, and any ``twinmesh worker`` runs it: the
same training as ``twinmesh federation run`` against the configured SuperLink
(``federation.superlink``, TLS from ``federation.certs`` unless ``federation.insecure``),
registering the model as a new version of the job's twin, with the trigger (skill,
threshold, window) in its provenance.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from twinmesh.core.capabilities.declaration import Capability, CapabilityInputs, Record
from twinmesh.core.engine import Engine, Progress
from twinmesh.core.errors import InvalidParameter, TwinmeshError
from twinmesh.core.results import OutputKind, Result
from twinmesh.core.retraining import JOB_KIND
from twinmesh.core.twin import Twin

__all__ = ["FEDERATED_TRAINING", "TrainingInputs", "TrainingFailed"]


class TriggerInputs(BaseModel):
    """Why the retraining trigger started this training."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str = Field(max_length=2000)
    skill_nse: float | None = None
    threshold_nse: float
    window: str = Field(max_length=64)
    observations: int = Field(ge=0)
    model_version: int


class TrainingInputs(CapabilityInputs):
    superlink: str | None = Field(
        default=None,
        max_length=256,
        description="HOST:PORT of the SuperLink (default: setting federation.superlink).",
    )
    rounds: int = Field(default=3, ge=1, le=100, description="Federated rounds.")
    min_nodes: int = Field(default=2, ge=1, le=1000, description="Fewer nodes fail the run.")
    strategy: Literal["fedprox", "fedavg"] = "fedprox"
    trigger: TriggerInputs | None = Field(
        default=None, description="Set by the retraining trigger: why it runs."
    )


class TrainingReport(BaseModel):
    """What ``twinmesh federation run`` prints."""

    model_config = ConfigDict(extra="allow")

    status: str
    run: int
    registered: list[str] = Field(default_factory=list)


class TrainingFailed(TwinmeshError):
    """The federated run did not complete (deadline, too few nodes, ...)."""

    code = "FederatedTrainingFailed"
    status = 500


def _compute(engine: Engine, twin: Twin, inputs: TrainingInputs, progress: Progress) -> Result:
    from twinmesh.federation.training import TrainingRequest, train

    fed = engine.settings.federation
    superlink = inputs.superlink or fed.superlink
    if not superlink:
        raise InvalidParameter(
            "no SuperLink: pass superlink or set federation.superlink (HOST:PORT)"
        )
    if not fed.insecure and fed.certs is None:
        raise InvalidParameter(
            "TLS is on by default: set federation.certs (made by `twinmesh federation certs`) "
            "or federation.insecure for a development federation"
        )
    trigger = inputs.trigger.model_dump(mode="json") if inputs.trigger else None
    why = f"retraining triggered: {inputs.trigger.reason}" if inputs.trigger else "requested"
    progress(0.0, f"federated training of {twin.id} on {superlink} ({why})")
    result = train(
        engine.settings,
        TrainingRequest(
            superlink=superlink,
            twins=[twin.id],
            rounds=inputs.rounds,
            strategy=inputs.strategy,
            min_nodes=inputs.min_nodes,
            certs=None if fed.insecure else fed.certs,
            insecure=fed.insecure,
            trigger=trigger,
        ),
        say=lambda line: progress(0.5, f"{line} ({why})"[:1000]),
    )
    if not result.completed:
        raise TrainingFailed(f"federated training failed: {result.report.get('reason')}")
    version = result.versions[0].version if result.versions else None
    return Result(
        OutputKind.RECORD,
        JOB_KIND,
        twin.id,
        result.report,
        model_version=version,
        inputs=inputs.model_dump(mode="json"),
    )


def _estimate(_engine: Engine, _twin: Twin, _inputs: TrainingInputs) -> int:
    return 0  # a small JSON report; the model goes to the registry


FEDERATED_TRAINING = Capability(
    name=JOB_KIND,
    title="Federated training",
    description="Train the twin's data-driven model with Flower across the partners "
    "connected to the SuperLink and register it as a new model version.",
    inputs=TrainingInputs,
    output=Record(TrainingReport),
    compute=_compute,  # type: ignore[arg-type]
    estimate_bytes=_estimate,  # type: ignore[arg-type]
    keywords=("Flower", "federated learning"),
)
