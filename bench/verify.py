"""Benchmark: `twinmesh verify` — a full 3-year daily hindcast of the Fulda warnings.

Builds the Fulda demo twin (the calibration budget of `twinmesh demo init`) in a
temporary data dir and measures

- ``verify``: the capability over every issue day of 1986-1988 (1086 days, lead 10,
  9 ESP members, plus the persistence and perfect-forecast references), which carries
  the model state forward one day at a time and reads the ensemble forcing once;
- the baseline, in the same run: the same ESP hindcast done the naive way, one
  ``warnings`` call per issue day through the engine (each call reads the forcing cube
  and spins the model up from the start of the record), timed on a sample of issue
  days and scaled to the whole period.

It prints the seconds of each, the ratio (baseline / verify) and whether the full
hindcast stayed under the one-minute target on this machine.

Run: ``.venv/bin/python bench/verify.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import pandas as pd  # noqa: E402

from twinmesh.core.demo import FULDA  # noqa: E402
from twinmesh.core.engine import Engine  # noqa: E402
from twinmesh.core.settings import Settings  # noqa: E402

SAMPLE_DAYS = 30
TARGET_S = 60.0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        engine = Engine(settings)
        print(f"building the Fulda twin ({settings.calibration_repetitions} SCE-UA runs) ...")
        FULDA.build_into(
            engine.store, seed=settings.demo_seed, repetitions=settings.calibration_repetitions
        )
        engine.run("fulda", "verify", {"start": "1986-01-01", "end": "1986-01-05"})  # JIT warm-up

        start = time.perf_counter()
        report = engine.run("fulda", "verify", {}).data
        verify_s = time.perf_counter() - start
        (point,) = report["points"]

        days = pd.date_range("1986-01-01", "1988-12-21", freq="D")
        sample = days[:: max(1, days.size // SAMPLE_DAYS)][:SAMPLE_DAYS]
        start = time.perf_counter()
        for day in sample:
            engine.run(
                "fulda",
                "warnings",
                {"issued": day.date().isoformat(), "lead_days": 10, "regions": ["fulda-basin"]},
            )
        per_day = (time.perf_counter() - start) / sample.size
        baseline_s = per_day * point["issue_days"]
        engine.close()

    esp = point["systems"]["esp"]
    print(f"cores: {os.cpu_count()}")
    print(
        f"verify fulda {report['period']['start']}/{report['period']['end']}: "
        f"{point['issue_days']} issue days, lead {report['lead_days']} d, "
        f"3 forecast systems: {verify_s:.1f} s "
        f"({point['issue_days'] / verify_s:.0f} issue days/s)"
    )
    print(
        f"baseline, one warnings call per issue day: {per_day * 1000:.0f} ms/day on "
        f"{sample.size} days -> {baseline_s:.0f} s for the period (ESP only)"
    )
    print(f"ratio baseline / verify: {baseline_s / verify_s:.1f}")
    verdict = "within" if verify_s < TARGET_S else "OVER"
    print(f"target: full 3-year hindcast < {TARGET_S:.0f} s: {verdict} ({verify_s:.1f} s)")
    print(f"ESP at the outlet: CSI {esp['csi']}, FAR {esp['far']}, POD {esp['pod']}")


if __name__ == "__main__":
    main()
