"""Start `twinmesh up` as a user does and wait for its ready line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

READY = "twinmesh is up"


def start_up(
    data_dir: Path, *args: str, env: dict[str, str], timeout_s: float = 300
) -> tuple[subprocess.Popen[str], list[str]]:
    """Run ``twinmesh --data-dir DATA_DIR up ARGS``; return the process and the lines it
    printed up to the ready line. Fails the test (and kills it) if it never gets there."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "twinmesh.cli", "--data-dir", str(data_dir), "up", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120", **env},
        cwd=data_dir,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if READY in line:
            return proc, lines
    proc.kill()
    proc.wait()
    pytest.fail("twinmesh up did not become ready:\n" + "".join(lines))
