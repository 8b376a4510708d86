"""Launching Flower's deployment engine from twinmesh: the SuperLink, a partner's
SuperNode (supervised, reconnecting with backoff), and a run under a deadline watched by
a watchdog.

Flower lives in an environment of its own (``settings.federation.flower_env``; made by
scripts/bootstrap from federation/requirements.txt): its pins conflict with the
project's (protobuf, fastapi, typer), so twinmesh starts Flower's executables from that
environment's ``bin/`` and never imports flwr itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "APP_DIR",
    "FlowerEnv",
    "RunOutcome",
    "superlink_argv",
    "supernode_argv",
    "write_cli_config",
    "submit_run",
    "run_status",
    "stop_run",
    "register_node",
    "wait_for_run",
    "supervise",
]

#: The app bundle's directory (its own pyproject.toml, apart from the project's).
APP_DIR = Path(__file__).parent / "app"
#: Name of the SuperLink connection in the flwr CLI's config.toml.
CONNECTION = "twinmesh"


@dataclass(frozen=True)
class FlowerEnv:
    """Flower's own virtual environment."""

    root: Path

    def exe(self, name: str) -> str:
        path = self.root / "bin" / name
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist: Flower's environment is made by scripts/bootstrap "
                "(setting federation.flower_env names it)"
            )
        return str(path)

    def env(self, flwr_home: Path) -> dict[str, str]:
        """The environment of a Flower process: its own FLWR_HOME, telemetry off, and the
        env's bin/ first on PATH (the SuperLink and SuperNode start helpers from it)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLWR_", "VIRTUAL_ENV"))}
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["FLWR_HOME"] = str(flwr_home)
        env["FLWR_TELEMETRY_ENABLED"] = "0"
        env["PYTHONUNBUFFERED"] = "1"
        return env


@dataclass(frozen=True)
class Tls:
    """Certificates of a TLS deployment (``twinmesh federation certs`` makes them)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def superlink_argv(
    flower: FlowerEnv,
    *,
    port: int,
    database: Path,
    tls: Tls | None,
    node_auth: bool,
    host: str = "127.0.0.1",
) -> list[str]:
    """flower-superlink serving Fleet, Control and Runtime APIs on one HTTP port, its
    state in ``database`` (a restart loses nothing), no run-time dependency installs."""
    argv = [
        flower.exe("flower-superlink"),
        "--host",
        host,
        "--port",
        str(port),
        "--database",
        str(database),
        "--disable-runtime-dependency-installation",
    ]
    if tls is None:
        argv.append("--insecure")
    else:
        argv += [
            "--ssl-ca-certfile",
            str(tls.ca_cert),
            "--ssl-certfile",
            str(tls.server_cert),
            "--ssl-keyfile",
            str(tls.server_key),
        ]
    if node_auth:
        argv.append("--enable-supernode-auth")
    return argv


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def supernode_argv(
    flower: FlowerEnv,
    *,
    superlink: str,
    port: int,
    data: Path,
    allowed_apps: list[str],
    audit_log: Path,
    root_cert: Path | None,
    auth_key: Path | None,
) -> list[str]:
    """flower-supernode for one partner: its data directory, the app bundles its operator
    allows and its audit log go to the ClientApp as node config."""
    node_config = " ".join(
        [
            f"data-path={_toml_string(str(data))}",
            f"allowed-apps={_toml_string(','.join(allowed_apps))}",
            f"audit-log={_toml_string(str(audit_log))}",
        ]
    )
    argv = [
        flower.exe("flower-supernode"),
        "--superlink",
        superlink,
        "--port",
        str(port),
        "--node-config",
        node_config,
    ]
    if root_cert is None:
        argv.append("--insecure")
    else:
        argv += ["--root-certificates", str(root_cert)]
    if auth_key is not None:
        argv += ["--auth-supernode-private-key", str(auth_key)]
    return argv


def write_cli_config(flwr_home: Path, superlink: str, root_cert: Path | None) -> None:
    """The flwr CLI's connection to the SuperLink (FLWR_HOME/config.toml)."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    lines = [
        "[superlink]",
        f"default = {_toml_string(CONNECTION)}",
        "",
        f"[superlink.{CONNECTION}]",
        f"address = {_toml_string(superlink)}",
    ]
    if root_cert is None:
        lines.append("insecure = true")
    else:
        lines.append(f"root-certificates = {_toml_string(str(root_cert))}")
    (flwr_home / "config.toml").write_text("\n".join(lines) + "\n")


def _flwr_json(flower: FlowerEnv, home: Path, args: list[str], cwd: Path | None = None) -> Any:
    proc = subprocess.run(
        [flower.exe("flwr"), *args, "--format", "json"],
        env=flower.env(home),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        answer = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(
            f"flwr {' '.join(args)} failed ({proc.returncode}): {proc.stdout[-2000:]} "
            f"{proc.stderr[-2000:]}"
        ) from None
    if not answer.get("success", False):
        raise RuntimeError(f"flwr {args[0]}: {answer.get('error-message', answer)}")
    return answer


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def submit_run(
    flower: FlowerEnv, home: Path, run_config: dict[str, Any], app_dir: Path = APP_DIR
) -> int:
    """Submit the app bundle to the SuperLink; returns Flower's run id."""
    overrides = " ".join(f"{k}={_toml_value(v)}" for k, v in run_config.items())
    answer = _flwr_json(
        flower, home, ["run", str(app_dir), CONNECTION, "--run-config", overrides], cwd=app_dir
    )
    return int(answer["run-id"])


def run_status(flower: FlowerEnv, home: Path, run_id: int) -> dict[str, Any]:
    """Flower's record of one run (``flwr ls --run-id``)."""
    answer = _flwr_json(flower, home, ["ls", CONNECTION, "--run-id", str(run_id)])
    runs = answer.get("runs", [])
    return dict(runs[0]) if runs else {}


def register_node(flower: FlowerEnv, home: Path, public_key: Path, name: str | None) -> int:
    """Register a SuperNode's public key with the SuperLink (``flwr supernode register``);
    only registered nodes connect to a SuperLink started with --enable-supernode-auth."""
    args = ["supernode", "register", str(public_key), CONNECTION]
    if name:
        args += ["--name", name]
    answer = _flwr_json(flower, home, args)
    return int(answer.get("node-id", 0))


def stop_run(flower: FlowerEnv, home: Path, run_id: int) -> None:
    _flwr_json(flower, home, ["stop", str(run_id), CONNECTION])


@dataclass
class RunOutcome:
    """How a run ended: Flower's status, the ServerApp's summary, and a reason."""

    run_id: int
    flower_status: str
    summary: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    @property
    def completed(self) -> bool:
        return self.summary.get("status") == "completed"


def _summary(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "status.json"
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError):
        return {}


def wait_for_run(
    flower: FlowerEnv,
    home: Path,
    run_id: int,
    out_dir: Path,
    *,
    deadline_s: float,
    poll_s: float = 2.0,
) -> RunOutcome:
    """Wait until the run finishes; at the deadline the watchdog stops it (``flwr stop``)
    and says why. A SuperLink that is briefly away (restarting) is waited for."""
    deadline = time.monotonic() + deadline_s
    status = "unknown"
    while True:
        summary = _summary(out_dir)
        # A SuperLink that is away (restarting) does not answer: wait until the deadline.
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            status = str(run_status(flower, home, run_id).get("status", status))
        if status.startswith("finished"):
            reason = str(summary.get("reason", "")) or (
                "" if summary.get("status") == "completed" else f"Flower reports {status}"
            )
            return RunOutcome(run_id, status, summary, reason)
        if time.monotonic() > deadline:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                stop_run(flower, home, run_id)
            reason = str(summary.get("reason", "")) or (
                f"deadline: the run did not finish within {deadline_s:.0f} s "
                f"(Flower status {status}); stopped by the watchdog"
            )
            return RunOutcome(run_id, "stopped", summary, reason)
        time.sleep(poll_s)


def supervise(
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    *,
    backoff_s: tuple[float, float] = (1.0, 30.0),
    stop_after: float | None = None,
) -> int:
    """Run ``argv`` and start it again with exponential backoff whenever it exits (a
    SuperNode exits when its SuperLink stays away); SIGTERM/SIGINT stop it for good."""
    stopping = {"now": False}
    child: dict[str, subprocess.Popen[bytes] | None] = {"proc": None}

    def _stop(signum: int, _frame: Any) -> None:
        stopping["now"] = True
        proc = child["proc"]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    delay = backoff_s[0]
    started = time.monotonic()
    code = 0
    while not stopping["now"]:
        with log_path.open("ab") as log:
            log.write(f"twinmesh: starting {shlex.join(argv)}\n".encode())
            log.flush()
            began = time.monotonic()
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
            child["proc"] = proc
            code = proc.wait()
            log.write(f"twinmesh: exited with {code}\n".encode())
        if stopping["now"] or (stop_after is not None and time.monotonic() - started > stop_after):
            break
        if time.monotonic() - began > 60:
            delay = backoff_s[0]
        with log_path.open("ab") as log:
            log.write(f"twinmesh: restarting in {delay:.0f} s\n".encode())
        time.sleep(delay)
        delay = min(delay * 2, backoff_s[1])
    return code
