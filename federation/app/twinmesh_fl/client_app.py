"""The ClientApp a partner's SuperNode runs: trains the model on the partner's own data
and replies with parameters and metrics only; every reply is written to the node's audit
log (round, tensor shapes, bytes, sha256 — never data values)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from .bundle import bundle_digest
from .model import MLPRunoffModel
from .task import LocalData, load_local_data

app = ClientApp()


class BundleNotAllowed(RuntimeError):
    """The node's operator did not allow this app bundle."""


def _check_bundle(context: Context) -> None:
    allowed = str(context.node_config.get("allowed-apps", "")).split(",")
    allowed = [a.strip() for a in allowed if a.strip()]
    digest = bundle_digest()
    if "*" not in allowed and digest not in allowed:
        _audit(context, {"event": "refused", "reason": "app bundle not allowed", "app": digest})
        raise BundleNotAllowed(
            f"this node allows app bundles {allowed or '(none)'}; refused bundle {digest}"
        )


def _local(context: Context) -> LocalData:
    return load_local_data(str(context.node_config["data-path"]))


def _audit(context: Context, entry: dict[str, object]) -> None:
    path = context.node_config.get("audit-log")
    if not path:
        return
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **entry}
    with Path(str(path)).open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


def _audit_reply(context: Context, msg: Message, content: RecordDict, kind: str) -> None:
    arrays = []
    for name, record in content.array_records.items():
        for key, array in record.items():
            data = array.data
            arrays.append(
                {
                    "record": name,
                    "name": key,
                    "shape": list(array.shape),
                    "dtype": array.dtype,
                    "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
    metrics = {k: dict(v) for k, v in content.metric_records.items()}
    configs = {k: dict(v) for k, v in content.config_records.items()}
    _audit(
        context,
        {
            "event": "sent",
            "message": kind,
            "run": msg.metadata.run_id,
            "round": int(msg.content["config"].get("server-round", 0)),
            "arrays": arrays,
            "metrics": metrics,
            "configs": configs,
            "app": bundle_digest(),
        },
    )


def _model(msg: Message) -> MLPRunoffModel:
    return MLPRunoffModel.from_parameters(msg.content["arrays"].to_numpy_ndarrays())


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Local training from the global parameters (FedProx adds its proximal term)."""
    _check_bundle(context)
    data = _local(context)
    model = _model(msg)
    config = msg.content["config"]
    loss = model.fit(
        data.x_train,
        data.y_train,
        steps=int(config.get("local-steps", 300)),
        learning_rate=float(config.get("learning-rate", 0.01)),
        proximal_mu=float(config.get("proximal-mu", 0.0)),
        seed=int(config.get("server-round", 0)),
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord(model.get_parameters()),
            "metrics": MetricRecord({"num-examples": data.samples, "train-mse": float(loss)}),
            "partner": ConfigRecord({"name": data.partner}),
        }
    )
    _audit_reply(context, msg, content, "train")
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Skill of the global parameters on the partner's held-out period."""
    _check_bundle(context)
    data = _local(context)
    model = _model(msg)
    scores = [model.evaluate(x, y)["nse"] for x, y in data.test_series]
    pooled = model.evaluate(data.x_test, data.y_test)
    content = RecordDict(
        {
            "metrics": MetricRecord(
                {
                    "num-examples": int(np.isfinite(data.y_test).sum()),
                    "nse": float(np.nan_to_num(pooled["nse"], nan=-1.0)),
                    "kge": float(np.nan_to_num(pooled["kge"], nan=-1.0)),
                    "held-out-first-day": data.held_out_days[0],
                    "held-out-last-day": data.held_out_days[1],
                    "nse-median-series": float(np.nan_to_num(np.median(scores), nan=-1.0)),
                }
            ),
            "partner": ConfigRecord({"name": data.partner}),
        }
    )
    _audit_reply(context, msg, content, "evaluate")
    return Message(content=content, reply_to=msg)
