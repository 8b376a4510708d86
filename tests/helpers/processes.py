"""Service processes for tests and benchmarks: start one on 127.0.0.1, wait until its
health URL answers, stop it by its own pid (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

__all__ = ["process_running", "stop_process", "serving_process"]


def process_running(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    """Stop ``proc`` by its pid: SIGTERM, and SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextlib.contextmanager
def serving_process(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    health_url: str | None = None,
    ready: Callable[[], bool] | None = None,
    name: str,
    timeout_s: float = 120,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` until ``health_url`` answers 200 (or ``ready()`` is true), yield it,
    stop it by its pid.

    Raises RuntimeError with the end of the log if it exits or stays silent."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the {name} exited with {proc.returncode}:\n"
                    + log_path.read_text(errors="replace")[-4000:]
                )
            if ready is not None and ready():
                break
            if health_url is not None:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(health_url, timeout=2).status_code == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the {name} did not answer within {timeout_s}s:\n"
                    + log_path.read_text(errors="replace")[-4000:]
                )
            time.sleep(0.2)
        yield proc
    finally:
        stop_process(proc)
