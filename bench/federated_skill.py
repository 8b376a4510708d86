"""Why federate, in numbers: on one split and held-out period (the last half of every
partner's record), the NSE of

* the federated model: 1 SuperLink + one SuperNode per partner, real processes on
  127.0.0.1 (Flower's deployment engine), FedProx by default;
* centralised training on the pooled data (which the partners may not do), with the same
  number of optimiser steps as one partner does over all rounds;
* each partner training alone on its own data;

each scored as the median NSE over every partner region's held-out series, plus seconds
per Flower round. Targets: federated >= 0.97x centralised; federated > the smallest
partner alone.

    .venv/bin/python bench/federated_skill.py [--rounds 5] [--strategy fedprox]
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


def median_nse(model: MLPRunoffModel, data: dict[str, LocalData]) -> float:
    scores = [nse(model.predict_features(x), y) for d in data.values() for x, y in d.test_series]
    return float(np.median(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--strategy", default="fedprox", choices=["fedavg", "fedprox"])
    parser.add_argument("--local-steps", type=int, default=300)
    args = parser.parse_args()

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
        alone = {}
        for name, d in data.items():
            m = MLPRunoffModel()
            m.fit(d.x_train, d.y_train, steps=steps)
            alone[name] = median_nse(m, data)
        pooled = MLPRunoffModel()
        pooled.fit(
            np.concatenate([d.x_train for d in data.values()]),
            np.concatenate([d.y_train for d in data.values()]),
            steps=steps,
        )
        central = median_nse(pooled, data)
        baseline_s = time.perf_counter() - t0

        with running_federation(root / "flower", settings) as fed:
            for name, path in dirs.items():
                fed.join(name, path)
            fed.wait_for_nodes(len(dirs))
            proc = subprocess.run(
                twinmesh_argv(
                    "federation", "run", "--insecure", "--superlink", fed.address,
                    "--rounds", str(args.rounds), "--strategy", args.strategy,
                    "--local-steps", str(args.local_steps), "--min-nodes", str(len(dirs)),
                    "--twin", "delaware", "--out", str(root / "run"),
                ),
                env=fed.env(), capture_output=True, text=True, check=False,
            )  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(f"federated run failed: {proc.stdout} {proc.stderr}")
        result = json.loads(proc.stdout)
        with np.load(root / "run" / "model.npz") as z:
            federated = MLPRunoffModel.from_parameters([z[f"arr_{i}"] for i in range(4)])
        fed_nse = median_nse(federated, data)

    smallest = min(data, key=lambda n: data[n].samples)
    print()
    print("partners: " + ", ".join(f"{n} ({data[n].samples} samples)" for n in data))
    print(f"{'model':<34} {'median NSE':>10} {'vs centralised':>15}")
    print(f"{'centralised (pooled data)':<34} {central:>10.3f} {1.0:>15.2f}")
    label = f"federated ({result['strategy']})"
    print(f"{label:<34} {fed_nse:>10.3f} {fed_nse / central:>15.2f}")
    for name in DEMO_PARTNERS:
        label = f"{name} alone" + (" (smallest)" if name == smallest else "")
        print(f"{label:<34} {alone[name]:>10.3f} {alone[name] / central:>15.2f}")
    print()
    print(
        f"rounds {result['rounds']}, seconds per Flower round {result['seconds_per_round']:.1f} "
        f"(all local baselines together: {baseline_s:.1f} s)"
    )
    print(
        f"targets: federated >= 0.97x centralised: {fed_nse >= 0.97 * central}; "
        f"federated > smallest partner alone: {fed_nse > alone[smallest]}"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of the benchmark process {peak:.0f} MB")


if __name__ == "__main__":
    main()
