"""The SQL side of the core: jobs, the model registry and the event log.

One SQL layer (SQLAlchemy Core) for two databases, chosen by one setting,
``database_url``: SQLite in the data directory on a laptop, PostgreSQL at scale.
The schema is versioned: ``migrate()`` applies the numbered migrations a database
has not seen yet, under a lock, so any number of processes may call it at start-up.

Why not Alembic: five tables, no autogeneration wanted, and migrations must run
from an installed wheel without an ``alembic.ini``; the ``schema_version`` table with
ordered migration functions is the same idea in forty lines.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    insert,
    select,
    text,
)
from sqlalchemy.engine import make_url

__all__ = [
    "Database",
    "metadata",
    "jobs",
    "models",
    "model_aliases",
    "alias_history",
    "events",
    "utcnow",
    "normalise_url",
]

metadata = MetaData()


def utcnow() -> datetime:
    return datetime.now(UTC)


#: An integer primary key that is a 64-bit sequence on PostgreSQL and SQLite's rowid.
_Seq = BigInteger().with_variant(Integer, "sqlite")

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied", DateTime(timezone=True), nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("twin", String(128), nullable=False),
    Column("capability", String(64), nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("owner", String(256), nullable=True),
    Column("status", String(16), nullable=False),
    Column("progress", Float, nullable=False, default=0.0),
    Column("message", Text, nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    Column("started", DateTime(timezone=True), nullable=True),
    Column("finished", DateTime(timezone=True), nullable=True),
    Column("error", JSON, nullable=True),
    Column("result", JSON, nullable=True),
    Column("model_version", String(64), nullable=True),
    Column("worker", String(128), nullable=True),
    #: Epoch seconds until which ``worker`` holds the job; past it, any worker may take it.
    Column("lease_until", Float, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Index("ix_jobs_status_created", "status", "created"),
    Index("ix_jobs_twin", "twin"),
)

models = Table(
    "models",
    metadata,
    Column("twin", String(128), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("parameters", JSON, nullable=False),
    Column("region_parameters", JSON, nullable=False),
    #: Store path of a model artifact (weights, a file) when parameters are not enough.
    Column("artifact", Text, nullable=True),
    Column("skill", JSON, nullable=False),
    Column("provenance", JSON, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("approved", Boolean, nullable=False, default=False),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("twin", String(128), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)

alias_history = Table(
    "model_alias_history",
    metadata,
    Column("id", _Seq, primary_key=True, autoincrement=True),
    Column("twin", String(128), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("switched", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False, default=""),
)

events = Table(
    "events",
    metadata,
    #: The log's order: strictly increasing, never reused.
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("twin", String(128), nullable=False),
    Column("region", String(128), nullable=True),
    Column("variable", String(128), nullable=True),
    #: What the event is about: an observation's time, a warning's issue time.
    Column("time", DateTime(timezone=True), nullable=False),
    #: Identity for idempotent ingestion (observations): duplicates are stored once.
    Column("key", String(512), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("recorded", DateTime(timezone=True), nullable=False),
    UniqueConstraint("kind", "twin", "key", name="uq_events_identity"),
    Index("ix_events_twin_time", "twin", "time"),
)


def _migration_1(conn: Connection) -> None:
    """Jobs, model registry, event log (the first contract)."""
    for table in (jobs, models, model_aliases, alias_history, events):
        table.create(conn, checkfirst=True)


#: Ordered migrations; a change of schema appends one, never edits an applied one.
MIGRATIONS: list[Callable[[Connection], None]] = [_migration_1]


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy would pick psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


class Database:
    """A connection pool to the job/model/event database and its schema."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            if parsed.database:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                self.url,
                connect_args={"timeout": 60, "check_same_thread": False},
                pool_pre_ping=False,
            )
            _sqlite_transactions(self.engine)
        elif self.dialect == "postgresql":
            self.engine = create_engine(self.url, pool_pre_ping=True, pool_size=5)
        else:
            raise ValueError(
                f"database_url {parsed.render_as_string()!r}: twinmesh supports sqlite:/// "
                "and postgresql:// URLs"
            )
        self._migrated = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Database({make_url(self.url).render_as_string(hide_password=True)!r})"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def migrate(self) -> int:
        """Bring the schema up to date; return its version. Safe to call concurrently."""
        with self._lock:
            if self._migrated:
                return len(MIGRATIONS)
            with self.engine.connect() as conn, conn.execution_options(twinmesh_write=True).begin():
                if self.is_postgres:
                    conn.execute(text("SELECT pg_advisory_xact_lock(7416533)"))
                schema_version.create(conn, checkfirst=True)
                done = {row[0] for row in conn.execute(select(schema_version.c.version))}
                for number, migration in enumerate(MIGRATIONS, start=1):
                    if number not in done:
                        migration(conn)
                        conn.execute(
                            insert(schema_version).values(version=number, applied=utcnow())
                        )
            self._migrated = True
            return len(MIGRATIONS)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction (SQLite: BEGIN IMMEDIATE, so writers queue instead of deadlocking)."""
        self.migrate()
        with self.engine.connect() as conn:
            conn = conn.execution_options(twinmesh_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only snapshot (SQLite: a deferred transaction that never blocks writers)."""
        self.migrate()
        with self.engine.connect() as conn:
            yield conn

    def insert_ignoring_duplicates(self, table: Table, constraint: list[str]) -> Any:
        """``INSERT ... ON CONFLICT DO NOTHING`` in this database's dialect."""
        if self.is_postgres:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table).on_conflict_do_nothing(index_elements=constraint)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing(index_elements=constraint)

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_transactions(engine: Engine) -> None:
    """WAL (readers never block the writer), a busy timeout, full durability, and
    transactions that take the write lock when they begin."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        writing = conn.get_execution_options().get("twinmesh_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")
