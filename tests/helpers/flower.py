"""Flower deployment processes for tests and the benchmark: a SuperLink and SuperNodes
started through the twinmesh CLI on 127.0.0.1, each in its own process group (stopped by
that group), ready when /health answers and the SuperLink lists the nodes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import httpx
import numpy as np

from tests.helpers.stac_server import free_port
from twinmesh.core.engine import Engine
from twinmesh.core.settings import Settings
from twinmesh.federation.launcher import FlowerEnv, write_cli_config

__all__ = [
    "Federation",
    "running_federation",
    "twinmesh_argv",
    "stop_group",
    "start_group",
    "gauged_regions",
    "simulated_discharge",
    "observations_csv",
]


def twinmesh_argv(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("twinmesh")), *args]


def start_group(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as f:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop the process group led by ``proc`` (SIGTERM, then SIGKILL)."""
    if proc.poll() is None or sig == signal.SIGKILL:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # helpers left in the group


@dataclass
class Federation:
    root: Path
    settings_env: dict[str, str]
    port: int
    superlink: subprocess.Popen[bytes] | None = None
    nodes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    flower: FlowerEnv | None = None
    #: Directory of `twinmesh federation certs`: TLS and node authentication; None runs
    #: the development mode (--insecure).
    certs: Path | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def security(self) -> list[str]:
        """The CLI's security options of this federation."""
        return ["--insecure"] if self.certs is None else ["--certs", str(self.certs)]

    def _health(self) -> bool:
        verify: ssl.SSLContext | bool = True
        if self.certs is None:
            url = f"http://{self.address}/health"
        else:
            url = f"https://{self.address}/health"
            verify = ssl.create_default_context(cafile=str(self.certs / "ca.crt"))
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(url, timeout=2, verify=verify).status_code == 200
        return False

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.settings_env}

    def start_superlink(self) -> None:
        self.superlink = start_group(
            twinmesh_argv(
                "federation",
                "superlink",
                *self.security(),
                "--port",
                str(self.port),
                "--home",
                str(self.root / "superlink"),
                "--database",
                str(self.root / "superlink.db"),
            ),
            self.env(),
            self.root / "superlink.log",
        )
        deadline = time.monotonic() + 120
        while True:
            if self.superlink.poll() is not None:
                raise RuntimeError((self.root / "superlink.log").read_text()[-4000:])
            if self._health():
                return
            if time.monotonic() > deadline:
                raise RuntimeError("SuperLink not healthy:\n" + self.log("superlink")[-4000:])
            time.sleep(0.3)

    def register(self, name: str) -> int:
        """Make the node's key pair and register its public key with the SuperLink."""
        assert self.certs is not None
        from twinmesh.federation.certs import make_certs

        keys = make_certs(self.certs, nodes=[name])
        proc = subprocess.run(
            twinmesh_argv(
                "federation", "register", "--superlink", self.address, "--certs",
                str(self.certs), "--public-key", str(keys.node_public_key(name)), "--name", name,
            ),
            env=self.env(), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"register {name}: {proc.stdout} {proc.stderr}")
        return int(json.loads(proc.stdout)["node"])

    def join(
        self, name: str, data: Path, allow_app: str | None = None, register: bool = True
    ) -> None:
        """Start a partner's SuperNode (with TLS, its key registered first unless
        ``register`` is false)."""
        security = self.security()
        if self.certs is not None:
            from twinmesh.federation.certs import make_certs

            if register:
                self.register(name)
            keys = make_certs(self.certs, nodes=[name])
            security += ["--auth-key", str(keys.node_key(name))]
        args = [
            "federation",
            "join",
            *security,
            "--superlink",
            self.address,
            "--data",
            str(data),
            "--port",
            str(free_port()),
            "--home",
            str(self.root / name),
            "--audit-log",
            str(self.audit_path(name)),
        ]
        if allow_app:
            args += ["--allow-app", allow_app]
        self.nodes[name] = start_group(twinmesh_argv(*args), self.env(), self.root / f"{name}.log")

    def audit_path(self, name: str) -> Path:
        return self.root / f"{name}.audit.jsonl"

    def audit(self, name: str) -> list[dict[str, object]]:
        path = self.audit_path(name)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def supervisor_log(self, name: str) -> str:
        """What `join` wrote about its SuperNode (starts, exits, restarts) and its output."""
        path = self.root / name / "supernode.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def listed_nodes(self) -> list[dict[str, object]]:
        """The SuperLink's SuperNodes (`flwr supernode list`: node-id, status, online-at, ...)."""
        assert self.flower is not None
        home = self.root / "cli-home"
        write_cli_config(home, self.address, None if self.certs is None else self.certs / "ca.crt")
        proc = subprocess.run(
            [self.flower.exe("flwr"), "supernode", "list", "twinmesh", "--format", "json"],
            env=self.flower.env(home),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        try:
            answer = json.loads(proc.stdout)
        except json.JSONDecodeError:
            return []
        return list(answer.get("nodes", []))

    def node_ids(self) -> list[int]:
        """Online SuperNodes, as the SuperLink lists them (`flwr supernode list`)."""
        return [int(str(n["node-id"])) for n in self.listed_nodes() if n.get("status") == "online"]

    def supernode_pid(self, name: str) -> int | None:
        """The flower-supernode process `join` supervises for ``name`` (None: none now)."""
        join = self.nodes[name]
        try:
            children = Path(f"/proc/{join.pid}/task/{join.pid}/children").read_text().split()
        except OSError:
            return None
        for pid in map(int, children):
            with contextlib.suppress(OSError):
                if b"flower-supernode" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
        return None

    def wait_for_nodes(self, n: int, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.node_ids()) < n:
            for name, proc in self.nodes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"node {name} exited:\n" + self.log(name)[-3000:])
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {len(self.node_ids())} of {n} nodes online:\n"
                    + self.log("superlink")[-3000:]
                )
            time.sleep(1.0)

    def stop(self) -> None:
        for proc in self.nodes.values():
            stop_group(proc)
        if self.superlink is not None:
            stop_group(self.superlink)


@contextlib.contextmanager
def running_federation(
    root: Path, settings: Settings, extra_env: dict[str, str] | None = None, tls: bool = False
) -> Iterator[Federation]:
    """A SuperLink (no nodes yet) for ``settings``'s store; stopped with its nodes. With
    ``tls``: development certificates, TLS and SuperNode authentication."""
    root.mkdir(parents=True, exist_ok=True)
    env = {
        "TWINMESH_DATA_DIR": str(settings.data_dir),
        "TWINMESH_DATABASE_URL": settings.resolved_database_url,
        "TWINMESH_CALIBRATION_REPETITIONS": str(settings.calibration_repetitions),
        "TWINMESH_STORE_URL": settings.resolved_store_url,
        **(extra_env or {}),
    }
    fed = Federation(root, env, free_port(), flower=FlowerEnv(settings.federation.flower_env))
    if tls:
        from twinmesh.federation.certs import make_certs

        fed.certs = make_certs(root / "certs").root
    try:
        fed.start_superlink()
        yield fed
    finally:
        fed.stop()


def federation_settings(demo: Settings, root: Path) -> Settings:
    """Settings with a data dir of their own (catalogue, registry, database) at ``root``
    over the demo's datacube store."""
    return demo.model_copy(
        update={
            "data_dir": root,
            "store_url": demo.resolved_store_url,
            "database_url": f"sqlite:///{root / 'twinmesh.sqlite'}",
        }
    )


def export_partners(settings: Settings, out: Path, partners: list[str]) -> dict[str, Path]:
    """Each demo partner's data in a directory of its own under ``out``."""
    from twinmesh.federation.partners import export_demo_partners

    engine = Engine(settings)
    try:
        return export_demo_partners(engine, out, partners)
    finally:
        engine.close()


def gauged_regions(engine: Engine, twin_id: str, n: int = 2) -> list[tuple[str, str]]:
    """(region, outlet gauge) of the twin's first ``n`` gauged regions."""
    twin = engine.twin(twin_id)
    return [(r.id, r.outlet_gauge) for r in twin.regions if r.outlet_gauge][:n]


def simulated_discharge(
    engine: Engine, twin_id: str, regions: list[str], start: date, end: date
) -> np.ndarray:
    result = engine.run(
        twin_id,
        "simulate",
        {"start": start.isoformat(), "end": end.isoformat(), "regions": regions},
    )
    return np.asarray(result.data["discharge_m3s"].transpose("region", "t").values)


def observations_csv(path: Path, gauges: list[str], start: date, values: np.ndarray) -> Path:
    lines = ["variable,location,time,value,units"]
    for g, series in zip(gauges, values, strict=True):
        for i, v in enumerate(series):
            day = start + timedelta(days=i)
            lines.append(f"discharge_m3s,{g},{day}T12:00:00Z,{v:.6f},m3 s-1")
    path.write_text("\n".join(lines) + "\n")
    return path
