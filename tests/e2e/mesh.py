"""Start `twinmesh up` as a user does and wait for its ready line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

READY = "twinmesh is up"


def start_up(
    data_dir: Path,
    *args: str,
    env: dict[str, str],
    timeout_s: float = 300,
    as_background_job: bool = False,
) -> tuple[subprocess.Popen[str], list[str]]:
    """Run ``twinmesh --data-dir DATA_DIR up ARGS``; return the process and the lines it
    printed up to the ready line. Fails the test (and kills it) if it never gets there.
    ``as_background_job`` starts it as a shell starts ``cmd &``: with SIGINT ignored."""

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    proc = subprocess.Popen(
        [sys.executable, "-m", "twinmesh.cli", "--data-dir", str(data_dir), "up", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120", **env},
        cwd=data_dir,
        text=True,
        preexec_fn=ignore_sigint if as_background_job else None,  # noqa: PLW1509
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
