"""A private, throw-away PostgreSQL server for tests and benchmarks.

The scale path of twinmesh (pgstac, the job store at scale) needs a real PostgreSQL
with PostGIS. Tests and benchmarks must not depend on a server someone else runs, so
:class:`TemporaryPostgres` starts one from the Debian binaries in a temporary
directory: loopback only, trust authentication, its own socket directory, stopped by
its own process id and removed on exit.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = ["PostgresUnavailable", "TemporaryPostgres", "find_postgres_bindir"]

#: What to install on Debian/Ubuntu when the server binaries or PostGIS are missing.
DEBIAN_PACKAGES = "postgresql-15 postgresql-15-postgis-3"
_REQUIRED_BINARIES = ("initdb", "postgres", "pg_isready", "createdb")


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server cannot be started here (binaries, user or start-up)."""


def _has_binaries(bindir: Path) -> bool:
    return all((bindir / name).is_file() for name in _REQUIRED_BINARIES)


def find_postgres_bindir() -> Path:
    """Directory holding ``initdb`` and ``postgres``.

    Asks ``pg_config --bindir`` first (the cluster the system is configured for), then
    the newest ``/usr/lib/postgresql/*/bin``; raises :class:`PostgresUnavailable` with
    the Debian packages to install when neither has the server binaries.
    """
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                candidates.append(Path(out))

    def major(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return -1.0

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major)[::-1]]
    for bindir in candidates:
        if _has_binaries(bindir):
            return bindir
    looked = ", ".join(str(c) for c in candidates) or "pg_config not on PATH"
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, postgres, pg_isready, createdb) were not "
        f"found (looked in: {looked}). On Debian/Ubuntu install them with: "
        f"apt-get install {DEBIAN_PACKAGES}"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TemporaryPostgres:
    """Start a private PostgreSQL server; ``.dsn`` points at a fresh database.

    Use as a context manager::

        with TemporaryPostgres() as pg:
            load_catalog_pgstac(pg.dsn, catalog_dir)

    The data directory, the unix socket and the log live in one temporary directory
    that is removed on exit. When run as root the server runs as the ``postgres``
    system user (PostgreSQL refuses root). Durability settings are off (``fsync``,
    ``synchronous_commit``): the data is thrown away anyway.
    """

    def __init__(
        self,
        dbname: str = "twinmesh",
        *,
        require_postgis: bool = True,
        startup_timeout_s: float = 60.0,
        system_user: str = "postgres",
    ) -> None:
        self.dbname = dbname
        self.require_postgis = require_postgis
        self.startup_timeout_s = startup_timeout_s
        self.system_user = system_user
        self.bindir: Path | None = None
        self.port: int | None = None
        self.tmpdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # -- public API ---------------------------------------------------------------
    @property
    def dsn(self) -> str:
        """libpq URL of the database (user ``postgres``, no password: trust auth)."""
        if self.port is None:
            raise RuntimeError("TemporaryPostgres is not running; use it as a context manager")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.dbname}"

    @property
    def pid(self) -> int | None:
        """Process id of the postmaster, while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        return self.tmpdir / "postgres.log" if self.tmpdir else None

    def create_database(self, dbname: str) -> str:
        """Create another database on the running server and return its DSN."""
        self._createdb(dbname)
        return self.dsn.rsplit("/", 1)[0] + f"/{dbname}"

    def start(self) -> TemporaryPostgres:
        """initdb, start the server, wait until it accepts connections, create the db."""
        self.bindir = find_postgres_bindir()
        if self.require_postgis:
            self._check_postgis()
        run_as = self._run_as()
        self.tmpdir = Path(tempfile.mkdtemp(prefix="twinmesh-pg-"))
        try:
            if run_as is not None:
                os.chown(self.tmpdir, run_as[0], run_as[1])
            self._initdb(run_as)
            self._start_server(run_as)
            self._createdb()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server by its own pid (fast shutdown) and remove the directory."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            # SIGINT is PostgreSQL's "fast" shutdown: it disconnects clients, unlike
            # SIGTERM which waits for them.
            os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGQUIT)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
        self.port = None

    def __enter__(self) -> TemporaryPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- steps --------------------------------------------------------------------
    def _check_postgis(self) -> None:
        assert self.bindir is not None
        sharedir = None
        pg_config = self.bindir / "pg_config"
        if pg_config.is_file():
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                sharedir = subprocess.run(
                    [str(pg_config), "--sharedir"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=True,
                ).stdout.strip()
        if sharedir is None:
            sharedir = f"/usr/share/postgresql/{self.bindir.parent.name}"
        control = Path(sharedir) / "extension" / "postgis.control"
        if not control.is_file():
            raise PostgresUnavailable(
                f"The PostGIS extension is not installed for the PostgreSQL in {self.bindir} "
                f"({control} is missing). On Debian/Ubuntu install: apt-get install "
                f"{DEBIAN_PACKAGES}"
            )

    def _run_as(self) -> tuple[int, int, list[int]] | None:
        """(uid, gid, groups) of the system user when we are root, else None."""
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(self.system_user)
        except KeyError:
            raise PostgresUnavailable(
                f"Running as root, but the system user {self.system_user!r} that PostgreSQL "
                f"must run as does not exist (the Debian packages {DEBIAN_PACKAGES} create it)."
            ) from None
        groups = os.getgrouplist(self.system_user, entry.pw_gid)
        return entry.pw_uid, entry.pw_gid, groups

    def _initdb(self, run_as: tuple[int, int, list[int]] | None) -> None:
        assert self.bindir is not None and self.tmpdir is not None
        env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
        if run_as is not None:
            env["HOME"] = str(self.tmpdir)
        result = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.tmpdir / "data"),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            cwd=self.tmpdir,
            env=env,
            timeout=120,
            user=run_as[0] if run_as else None,
            group=run_as[1] if run_as else None,
            extra_groups=run_as[2] if run_as else None,
        )
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"initdb failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}"
            )

    def _start_server(self, run_as: tuple[int, int, list[int]] | None) -> None:
        assert self.bindir is not None and self.tmpdir is not None
        sockdir = self.tmpdir / "socket"
        sockdir.mkdir()
        if run_as is not None:
            os.chown(sockdir, run_as[0], run_as[1])
        last_error = ""
        for _attempt in range(3):
            self.port = _free_port()
            log_path = self.tmpdir / "postgres.log"
            self._log_file = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
            env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
            self._proc = subprocess.Popen(
                [
                    str(self.bindir / "postgres"),
                    "-D",
                    str(self.tmpdir / "data"),
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={sockdir}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=100",
                ],
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                cwd=self.tmpdir,
                env=env,
                user=run_as[0] if run_as else None,
                group=run_as[1] if run_as else None,
                extra_groups=run_as[2] if run_as else None,
            )
            if self._wait_ready():
                return
            last_error = self._log_tail()
            proc, self._proc = self._proc, None
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGQUIT)
                proc.wait(timeout=10)
            self._log_file.close()
            self._log_file = None
            if "could not bind" not in last_error and "in use" not in last_error:
                break
        raise PostgresUnavailable(f"PostgreSQL did not start; its log ends with:\n{last_error}")

    def _wait_ready(self) -> bool:
        assert self.bindir is not None and self._proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            ready = subprocess.run(
                [
                    str(self.bindir / "pg_isready"),
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-t",
                    "2",
                ],
                capture_output=True,
                timeout=10,
            )
            if ready.returncode == 0:
                return True
            time.sleep(0.1)
        return False

    def _createdb(self, dbname: str | None = None) -> None:
        assert self.bindir is not None
        dbname = dbname or self.dbname
        result = subprocess.run(
            [
                str(self.bindir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                dbname,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise PostgresUnavailable(f"createdb {dbname} failed: {result.stderr.strip()}")

    def _log_tail(self, chars: int = 3000) -> str:
        path = self.log_path
        if path is None or not path.is_file():
            return "(no log)"
        return path.read_text(errors="replace")[-chars:]
