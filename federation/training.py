"""One federated training, start to registry: submit the app bundle to the SuperLink,
wait under the deadline (resuming from the last round's checkpoint when the SuperLink
lost the run), then register the model as a new version of each twin and publish it in
STAC. ``twinmesh federation run`` and the ``federated_training`` job kind both call
:func:`train`."""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twinmesh.core.settings import Settings

__all__ = ["TrainingRequest", "TrainingResult", "train", "node_names_file"]

#: A training whose Flower run the SuperLink lost is resumed at most this often.
MAX_RESUMES = 3


@dataclass(frozen=True)
class TrainingRequest:
    superlink: str
    twins: list[str]
    rounds: int = 3
    strategy: str = "fedprox"
    proximal_mu: float = 0.1
    local_steps: int = 300
    #: Adam's step size at the nodes (0.02: bench/federated_skill.py, 4 init seeds).
    learning_rate: float = 0.02
    min_nodes: int = 2
    deadline_s: float | None = None
    out: Path | None = None
    approve: bool = True
    #: None: development mode without TLS (only with ``insecure``).
    certs: Path | None = None
    insecure: bool = False
    #: Why this training runs, when a trigger started it (goes into the provenance).
    trigger: Mapping[str, Any] | None = None


@dataclass
class TrainingResult:
    completed: bool
    #: What ``federation run`` prints (JSON-able).
    report: dict[str, Any]
    #: The registered versions' references (``twin@version``) and numbers.
    versions: list[Any] = field(default_factory=list)


def node_names_file(settings: Settings, superlink: str) -> Path:
    """Node id -> partner name of one SuperLink, kept across runs."""
    name = re.sub(r"[^0-9A-Za-z.-]", "_", superlink)
    return settings.data_dir / "federation" / f"nodes-{name}.json"


def _checkpoint_rounds(out_dir: Path) -> int:
    try:
        return int(json.loads((out_dir / "checkpoint.json").read_text())["rounds_done"])
    except (OSError, ValueError, KeyError):
        return 0


def _quiet(_line: str) -> None:
    return None


def train(
    settings: Settings, req: TrainingRequest, say: Callable[[str], None] = _quiet
) -> TrainingResult:
    """Run the training across the SuperLink's nodes and register its model; ``say``
    gets progress lines (submitted runs, resumptions, dropped nodes)."""
    from twinmesh.core.engine import Engine
    from twinmesh.federation.launcher import FlowerEnv, submit_run, wait_for_run, write_cli_config
    from twinmesh.federation.registry import register_run
    from twinmesh.stac.models import model_item_id
    from twinmesh.stac.results import publish_catalog

    if not req.insecure and req.certs is None:
        raise ValueError("TLS is on by default: certificates are needed, or insecure mode")
    fed = settings.federation
    deadline_s = req.deadline_s or fed.deadline_seconds
    out_dir = (req.out or Path(tempfile.mkdtemp(prefix="twinmesh-run-"))).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    home = out_dir / "flwr-cli"
    root_cert = None if req.insecure or req.certs is None else req.certs / "ca.crt"
    write_cli_config(home, req.superlink, root_cert)
    flower = FlowerEnv(fed.flower_env)
    config: dict[str, Any] = {
        "num-server-rounds": req.rounds,
        "strategy": req.strategy,
        "proximal-mu": req.proximal_mu,
        "local-steps": req.local_steps,
        "learning-rate": req.learning_rate,
        "min-nodes": req.min_nodes,
        "round-timeout": fed.round_timeout_seconds,
        "out-dir": str(out_dir),
        "node-names": str(node_names_file(settings, req.superlink)),
    }
    ends = time.monotonic() + deadline_s
    attempt = 0
    while True:
        left = max(ends - time.monotonic(), 1.0)
        config.update({"deadline": left, "resume": attempt > 0})
        run_id = submit_run(flower, home, config)
        say(f"submitted Flower run {run_id}; waiting (deadline {left:.0f} s)")
        outcome = wait_for_run(flower, home, run_id, out_dir, deadline_s=left + 30)
        lost = outcome.summary.get("status") == "running"  # the ServerApp died unfinished
        if outcome.completed or not lost or attempt >= MAX_RESUMES:
            break
        if time.monotonic() > ends:
            break
        # The ServerApp lives in the SuperLink's process tree: a SuperLink killed mid-run
        # takes it along. Once the SuperLink is back (same --database), the training goes
        # on from the last finished round's checkpoint in a new Flower run.
        done = _checkpoint_rounds(out_dir)
        say(
            f"Flower run {run_id} ended unfinished ({outcome.reason or outcome.flower_status}); "
            f"resuming after round {done} in a new run"
        )
        attempt += 1
    for d in outcome.summary.get("dropped", []):
        say(f"round {d['round']}: node {d['node']} ({d['partner']}) dropped: no {d['stage']} reply")
    if not outcome.completed:
        return TrainingResult(False, {"run": run_id, "status": "failed", "reason": outcome.reason})
    engine = Engine(settings)
    try:
        versions = register_run(
            engine, req.twins, out_dir, outcome.summary, approve=req.approve, trigger=req.trigger
        )
        # Each new version is an item (MLM extension) of the twin's models collection.
        publish_catalog(settings, engine)
    finally:
        engine.close()
    s = outcome.summary
    report = {
        "run": run_id,
        "status": "completed",
        "rounds": s["rounds"],
        "strategy": s["strategy"],
        "partners": s["partners"],
        "validation": s["validation"],
        "dropped": s.get("dropped", []),
        "resumed_after_round": s.get("resumed_after_round"),
        "seconds_per_round": s["seconds_per_round"],
        "registered": [v.ref for v in versions],
        "stac_items": [model_item_id(v) for v in versions],
        "out": str(out_dir),
    }
    if req.trigger is not None:
        report["trigger"] = dict(req.trigger)
    return TrainingResult(True, report, versions)
