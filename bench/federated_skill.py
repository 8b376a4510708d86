"""Why federate, in numbers: on one split and held-out period (the last half of every
partner's record), the NSE of

* the federated model: 1 SuperLink + one SuperNode per partner, real processes on
  127.0.0.1 (Flower's deployment engine, TLS and node authentication), FedAvg and FedProx
  (the better one is marked);
* centralised training on the pooled data (which the partners may not do), with the same
  number of optimiser steps as one partner does over all rounds, at the best of three
  learning rates (0.005, 0.01, 0.02; chosen on the held-out period, which favours it);
* each partner training alone on its own data (likewise);

each scored as the median NSE over every partner region's held-out series, plus seconds
per Flower round. Targets: federated >= 0.97x centralised; federated > the smallest
partner alone.

    .venv/bin/python bench/federated_skill.py [--rounds 5] [--strategy fedprox ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.helpers.flower import running_federation, twinmesh_argv  # noqa: E402
from twinmesh.core.engine import Engine  # noqa: E402
from twinmesh.core.settings import Settings  # noqa: E402
from twinmesh.federation.app.twinmesh_fl.model import MLPRunoffModel, nse  # noqa: E402
from twinmesh.federation.app.twinmesh_fl.task import LocalData, load_local_data  # noqa: E402
from twinmesh.federation.partners import DEMO_PARTNERS, export_demo_partners  # noqa: E402

#: Learning rates every centralised / alone baseline is trained with; the best counts.
BASELINE_RATES = (0.005, 0.01, 0.02)


def median_nse(model: MLPRunoffModel, data: dict[str, LocalData]) -> float:
    scores = [nse(model.predict_features(x), y) for d in data.values() for x, y in d.test_series]
    return float(np.median(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--strategy",
        dest="strategies",
        action="append",
        choices=["fedavg", "fedprox"],
        help="federated strategy to run (repeatable; default both)",
    )
    parser.add_argument("--local-steps", type=int, default=300)
    parser.add_argument("--learning-rate", type=float, default=0.02)
    args = parser.parse_args()
    args.strategies = args.strategies or ["fedavg", "fedprox"]

    with tempfile.TemporaryDirectory(prefix="twinmesh-fedbench-") as tmp:
        root = Path(tmp)
        settings = Settings(
            data_dir=root / "data", database_url=f"sqlite:///{root / 'twinmesh.sqlite'}"
        )
        engine = Engine(settings)
        from twinmesh.core.demo import DEMO_TWINS

        print("building the demo twins (200 calibration runs)...", flush=True)
        for demo in DEMO_TWINS.values():
            demo.build_into(engine.store, seed=settings.demo_seed, repetitions=200)
        dirs = export_demo_partners(engine, root / "partners")
        engine.close()
        data = {name: load_local_data(path) for name, path in dirs.items()}

        t0 = time.perf_counter()
        steps = args.rounds * args.local_steps

        def best_of_rates(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
            """The baseline at its best learning rate: (median NSE, rate)."""
            scores = {}
            for rate in BASELINE_RATES:
                m = MLPRunoffModel()
                m.fit(x, y, steps=steps, learning_rate=rate)
                scores[rate] = median_nse(m, data)
            rate = max(scores, key=lambda r: scores[r])
            return scores[rate], rate

        alone = {name: best_of_rates(d.x_train, d.y_train)[0] for name, d in data.items()}
        central, central_rate = best_of_rates(
            np.concatenate([d.x_train for d in data.values()]),
            np.concatenate([d.y_train for d in data.values()]),
        )
        baseline_s = time.perf_counter() - t0

        results: dict[str, dict] = {}
        fed_nse: dict[str, float] = {}
        with running_federation(root / "flower", settings, tls=True) as fed:
            for name, path in dirs.items():
                fed.join(name, path)
            fed.wait_for_nodes(len(dirs))
            for strategy in args.strategies:
                out = root / f"run-{strategy}"
                proc = subprocess.run(
                    twinmesh_argv(
                        "federation", "run", *fed.security(), "--superlink", fed.address,
                        "--rounds", str(args.rounds), "--strategy", strategy,
                        "--local-steps", str(args.local_steps), "--min-nodes", str(len(dirs)),
                        "--learning-rate", str(args.learning_rate),
                        "--twin", "delaware", "--out", str(out),
                    ),
                    env=fed.env(), capture_output=True, text=True, check=False,
                )  # fmt: skip
                if proc.returncode != 0:
                    raise SystemExit(f"federated run failed: {proc.stdout} {proc.stderr}")
                results[strategy] = json.loads(proc.stdout)
                with np.load(out / "model.npz") as z:
                    model = MLPRunoffModel.from_parameters([z[f"arr_{i}"] for i in range(4)])
                fed_nse[strategy] = median_nse(model, data)
    smallest = min(data, key=lambda n: data[n].samples)
    print()
    print("partners: " + ", ".join(f"{n} ({data[n].samples} samples)" for n in data))
    print(f"{'model':<34} {'median NSE':>10} {'vs centralised':>15}")
    print(f"{f'centralised (pooled, lr {central_rate:g})':<34} {central:>10.3f} {1.0:>15.3f}")
    best = max(fed_nse, key=lambda k: fed_nse[k])
    for strategy, score in fed_nse.items():
        label = f"federated ({results[strategy]['strategy']})" + (
            " best" if strategy == best else ""
        )
        print(f"{label:<34} {score:>10.3f} {score / central:>15.3f}")
    for name in DEMO_PARTNERS:
        label = f"{name} alone" + (" (smallest)" if name == smallest else "")
        print(f"{label:<34} {alone[name]:>10.3f} {alone[name] / central:>15.3f}")
    print()
    for result in results.values():
        print(
            f"{result['strategy']}: rounds {result['rounds']}, seconds per Flower round "
            f"{result['seconds_per_round']:.1f} (TLS + node authentication, 127.0.0.1)"
        )
    print(f"all baselines together (3 learning rates each): {baseline_s:.1f} s")
    print(f"federated: learning rate {args.learning_rate:g}, {args.local_steps} local steps")
    score = fed_nse[best]
    print(
        f"targets ({results[best]['strategy']}): federated >= 0.97x centralised: "
        f"{score >= 0.97 * central} ({score / central:.3f}x); "
        f"federated > smallest partner alone: {score > alone[smallest]}"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of the benchmark process {peak:.0f} MB")


if __name__ == "__main__":
    main()
