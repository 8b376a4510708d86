"""Shared fixtures: a real demo twin built once per test process in a temporary store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from tests.helpers.postgres import TemporaryPostgres
from twinmesh.core.engine import Engine
from twinmesh.core.settings import Settings, StacSettings
from twinmesh.core.store import DatacubeStore

# Two cores shared by two test workers and the servers they start: a per-example
# deadline would measure the machine's load, not the code.
hypothesis_settings.register_profile("twinmesh", deadline=None)
hypothesis_settings.load_profile("twinmesh")

#: Fewer SCE-UA runs than `twinmesh demo init` (3000): the tests check behaviour, not skill.
TEST_REPETITIONS = 800


@pytest.fixture(scope="session")
def demo_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of a data directory holding the built demo twins and their catalogue."""
    from twinmesh.core.demo import DEMO_TWINS
    from twinmesh.stac.catalog import build_catalog

    data_dir: Path = tmp_path_factory.mktemp("twinmesh-demo")
    settings = Settings(
        data_dir=data_dir,
        calibration_repetitions=TEST_REPETITIONS,
        stac=StacSettings(port=0),
    )
    store = DatacubeStore(settings.resolved_store_url)
    for demo in DEMO_TWINS.values():
        demo.build_into(store, seed=settings.demo_seed, repetitions=TEST_REPETITIONS)
    build_catalog(store, settings.catalog_dir)
    return settings


@pytest.fixture(scope="session")
def demo_store(demo_settings: Settings) -> DatacubeStore:
    return DatacubeStore(demo_settings.resolved_store_url)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[TemporaryPostgres]:
    """One private PostgreSQL server per test process, stopped by its pid at the end."""
    with TemporaryPostgres(require_postgis=False) as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty job/model/event database: SQLite in tmp_path, or a new database
    on the private PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'twinmesh.sqlite'}"
    server: TemporaryPostgres = request.getfixturevalue("postgres_server")
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def demo_engine(demo_settings: Settings, tmp_path: Path) -> Iterator[Engine]:
    """An engine over the built demo store with a database of its own (models seeded
    from the twin documents on first use)."""
    settings = demo_settings.model_copy(
        update={"database_url": f"sqlite:///{tmp_path / 'engine.sqlite'}"}
    )
    engine = Engine(settings)
    yield engine
    engine.close()
