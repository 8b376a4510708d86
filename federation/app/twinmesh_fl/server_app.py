"""The ServerApp: FedAvg (or FedProx) over the partners' SuperNodes, under a deadline
watched by a watchdog, writing the trained parameters and their provenance for twinmesh
to register (``twinmesh federation run`` registers them in core's model registry)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from logging import INFO, WARNING
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message
from flwr.common import log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedProx

from .bundle import bundle_digest
from .model import FEATURES, KIND, MLPRunoffModel

app = ServerApp()

#: Exit status of a run the watchdog stopped.
DEADLINE_EXIT = 3


class _Tracking:
    """Per-partner bookkeeping shared by both strategies: who answered each round, how
    many samples, its validation skill, and which nodes dropped."""

    def _init_tracking(
        self, min_nodes: int, names_file: Path | None, resumed: dict[str, Any] | None
    ) -> None:
        self.min_nodes = min_nodes
        self.names_file = names_file
        self.partner_of: dict[int, str] = _read_names(names_file)
        self.samples: dict[str, int] = {}
        self.validation: dict[str, dict[str, float]] = {}
        self.dropped: list[dict[str, Any]] = []
        #: Rounds an earlier Flower run of this training did (resumed from its checkpoint).
        self.offset = 0
        self.seconds_before = 0.0
        if resumed:
            self.samples = dict(resumed["partners"])
            self.validation = dict(resumed["validation"])
            self.dropped = list(resumed["dropped"])
            self.offset = int(resumed["rounds_done"])
            self.seconds_before = float(resumed["seconds"])
        self.rounds_done = self.offset
        self.last_arrays: ArrayRecord | None = None
        self.started = time.monotonic()
        self._sent: dict[str, list[int]] = {}

    def _note_replies(self, kind: str, server_round: int, replies: list[Message]) -> None:
        server_round += self.offset
        answered = []
        for msg in replies:
            node = msg.metadata.src_node_id
            if msg.has_error():
                continue
            answered.append(node)
            name = str(msg.content["partner"]["name"])
            if self.partner_of.get(node) != name:
                self.partner_of[node] = name
                _write_names(self.names_file, self.partner_of)
            metrics = msg.content["metrics"]
            if kind == "train":
                self.samples[name] = int(metrics["num-examples"])
            else:
                self.validation[name] = {
                    "nse": float(metrics["nse"]),
                    "kge": float(metrics["kge"]),
                    "first_day": int(metrics["held-out-first-day"]),
                    "last_day": int(metrics["held-out-last-day"]),
                    "nse_median_series": float(metrics["nse-median-series"]),
                    "samples": int(metrics["num-examples"]),
                }
        sent = self._sent.get(kind, [])
        for node in sent:
            if node not in answered:
                who = self.partner_of.get(node, "partner unknown: it never answered")
                log(
                    WARNING,
                    "round %s: node %s (%s) dropped: no %s reply",
                    server_round,
                    node,
                    who,
                    kind,
                )
                self.dropped.append(
                    {"round": server_round, "node": node, "partner": who, "stage": kind}
                )
        if len(answered) < self.min_nodes:
            _fail(
                f"round {server_round}: only {len(answered)} node(s) answered {kind} "
                f"(minimum {self.min_nodes}); dropped: "
                + ", ".join(f"{d['node']} ({d['partner']})" for d in self.dropped[-len(sent) :])
            )

    def _note_sent(self, kind: str, messages: Iterable[Message]) -> list[Message]:
        out = list(messages)
        self._sent[kind] = [m.metadata.dst_node_id for m in out]
        return out

    def _checkpoint(self, out_dir: Path | None) -> None:
        """After each round: the global parameters and the bookkeeping, so that a run the
        SuperLink lost (killed, restarted) resumes from here (``resume``)."""
        if out_dir is None or self.last_arrays is None:
            return
        np.savez(out_dir / "checkpoint.tmp.npz", *self.last_arrays.to_numpy_ndarrays())
        (out_dir / "checkpoint.tmp.npz").replace(out_dir / "checkpoint.npz")
        state = {
            "rounds_done": self.rounds_done,
            "partners": self.samples,
            "validation": self.validation,
            "dropped": self.dropped,
            "seconds": self.seconds_before + time.monotonic() - self.started,
        }
        tmp = out_dir / "checkpoint.tmp.json"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(out_dir / "checkpoint.json")


def _read_names(path: Path | None) -> dict[int, str]:
    """Partner names of node ids seen in earlier runs (a node that drops before it ever
    answers in this run is still named)."""
    if path is None or not path.exists():
        return {}
    try:
        return {int(k): str(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError):
        return {}


def _write_names(path: Path | None, names: dict[int, str]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({str(k): v for k, v in names.items()}, indent=2) + "\n")
    tmp.replace(path)


def _resume_state(out_dir: Path | None) -> tuple[dict[str, Any], list[np.ndarray]] | None:
    if out_dir is None or not (out_dir / "checkpoint.json").exists():
        return None
    state = json.loads((out_dir / "checkpoint.json").read_text())
    with np.load(out_dir / "checkpoint.npz") as z:
        arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
    return state, arrays


def _strategy_class(base: type) -> type:
    class Tracked(_Tracking, base):  # type: ignore[misc, valid-type]
        def configure_train(self, server_round, arrays, config, grid):  # type: ignore[no-untyped-def]
            return self._note_sent(
                "train", super().configure_train(server_round, arrays, config, grid)
            )

        def configure_evaluate(self, server_round, arrays, config, grid):  # type: ignore[no-untyped-def]
            return self._note_sent(
                "evaluate", super().configure_evaluate(server_round, arrays, config, grid)
            )

        def aggregate_train(self, server_round, replies):  # type: ignore[no-untyped-def]
            replies = list(replies)
            self._note_replies("train", server_round, replies)
            arrays, metrics = super().aggregate_train(server_round, replies)
            if arrays is not None:
                self.last_arrays = arrays
            return arrays, metrics

        def aggregate_evaluate(self, server_round, replies):  # type: ignore[no-untyped-def]
            replies = list(replies)
            self._note_replies("evaluate", server_round, replies)
            self.rounds_done = server_round + self.offset
            self._checkpoint(_OUT.get("dir"))
            return super().aggregate_evaluate(server_round, replies)

    Tracked.__name__ = base.__name__
    return Tracked


_OUT: dict[str, Path] = {}


def _write_status(status: dict[str, Any]) -> None:
    out = _OUT.get("dir")
    if out is None:
        return
    tmp = out / "status.tmp.json"
    tmp.write_text(json.dumps(status, indent=2) + "\n")
    tmp.replace(out / "status.json")


def _fail(reason: str) -> None:
    """Stop the run now with a reason twinmesh can show (status.json, the log)."""
    log(WARNING, "twinmesh run failed: %s", reason)
    _write_status({"status": "failed", "reason": reason})
    os._exit(DEADLINE_EXIT)


def _wait_for_nodes(grid: Grid, wanted: int, deadline: float) -> None:
    """Flower waits forever for missing nodes; this waits until the deadline."""
    while True:
        n = len(list(grid.get_node_ids()))
        if n >= wanted:
            return
        if time.monotonic() > deadline:
            _fail(
                f"deadline: {n} of the {wanted} required node(s) connected; "
                "start the missing SuperNodes or lower min-nodes"
            )
        time.sleep(1.0)


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    out_dir = Path(str(cfg["out-dir"])) if cfg.get("out-dir") else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        _OUT["dir"] = out_dir
    rounds = int(cfg["num-server-rounds"])
    min_nodes = int(cfg["min-nodes"])
    deadline_s = float(cfg["deadline"])
    started = time.monotonic()
    deadline = started + deadline_s

    def _expired() -> None:
        try:
            n = len(list(grid.get_node_ids()))
        except Exception:  # the SuperLink may be away; the reason must still be written
            n = -1
        nodes = f"{n} of the {min_nodes} required node(s) connected" if n >= 0 else ""
        _fail(f"deadline: the run did not finish within {deadline_s:.0f} s ({nodes})")

    watchdog = threading.Timer(deadline_s, _expired)
    watchdog.daemon = True
    watchdog.start()
    _write_status({"status": "running", "run": context.run_id})
    _wait_for_nodes(grid, min_nodes, deadline)

    name = str(cfg["strategy"]).lower()
    common = dict(
        min_train_nodes=min_nodes, min_evaluate_nodes=min_nodes, min_available_nodes=min_nodes
    )
    if name == "fedprox":
        strategy = _strategy_class(FedProx)(proximal_mu=float(cfg["proximal-mu"]), **common)
    elif name == "fedavg":
        strategy = _strategy_class(FedAvg)(**common)
    else:
        _fail(f"unknown strategy {name!r}; use fedavg or fedprox")
    names = Path(str(cfg["node-names"])) if cfg.get("node-names") else None
    resumed = _resume_state(out_dir) if bool(cfg.get("resume", False)) else None
    strategy._init_tracking(min_nodes, names, resumed[0] if resumed else None)
    if resumed:
        start_arrays = resumed[1]
        log(INFO, "twinmesh: resuming after round %s from the checkpoint", strategy.offset)
    else:
        initial = MLPRunoffModel(hidden=int(cfg["hidden"]), seed=int(cfg["seed"]))
        start_arrays = initial.get_parameters()
    remaining = max(rounds - strategy.offset, 0)
    train_config = ConfigRecord(
        {"local-steps": int(cfg["local-steps"]), "learning-rate": float(cfg["learning-rate"])}
    )
    train_metrics: dict[str, dict[str, Any]] = {}
    evaluate_metrics: dict[str, dict[str, Any]] = {}
    arrays = start_arrays
    if remaining:
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(start_arrays),
            num_rounds=remaining,
            timeout=float(cfg["round-timeout"]),
            train_config=train_config,
        )
        arrays = result.arrays.to_numpy_ndarrays()
        off = strategy.offset
        train_metrics = {str(k + off): dict(v) for k, v in result.train_metrics_clientapp.items()}
        evaluate_metrics = {
            str(k + off): dict(v) for k, v in result.evaluate_metrics_clientapp.items()
        }
    elapsed = strategy.seconds_before + time.monotonic() - strategy.started
    watchdog.cancel()
    log(INFO, "twinmesh run finished: %s rounds in %.1f s", strategy.rounds_done, elapsed)
    if out_dir is not None:
        np.savez(out_dir / "model.npz", *arrays)
        summary = {
            "status": "completed",
            "run": context.run_id,
            "kind": KIND,
            "features": FEATURES,
            "rounds": strategy.rounds_done,
            "strategy": "FedProx" if name == "fedprox" else "FedAvg",
            "proximal_mu": float(cfg["proximal-mu"]) if name == "fedprox" else 0.0,
            "local_steps": int(cfg["local-steps"]),
            "learning_rate": float(cfg["learning-rate"]),
            "partners": strategy.samples,
            "validation": strategy.validation,
            "dropped": strategy.dropped,
            "resumed_after_round": strategy.offset if resumed else None,
            "app": bundle_digest(),
            "seconds": elapsed,
            "seconds_per_round": elapsed / max(strategy.rounds_done, 1),
            "train_metrics": train_metrics,
            "evaluate_metrics": evaluate_metrics,
        }
        _write_status(summary)
