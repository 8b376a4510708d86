"""The scale STAC API backend: stac-fastapi-pgstac on a private PostgreSQL + PostGIS.

The same STAC API contract as the embedded backend, with the same expected ids,
against ``python -m twinmesh.stac.api.app`` configured for pgstac; plus what only this
backend has: loading into pgstac is idempotent and prunes removed items. The server
comes from :class:`TemporaryPostgres`; without PostgreSQL binaries these tests fail
and say which Debian packages to install — they never skip.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from stac_api_contract import (
    ALL_IDS,
    ITEMS,
    StacApiContract,
    build_test_catalog,
    running_stac_server,
)

from tests.helpers import postgres as postgres_module
from tests.helpers.postgres import PostgresUnavailable, TemporaryPostgres, find_postgres_bindir
from twinmesh.stac.api.pgstac import load_catalog_pgstac, postgres_settings_from_dsn

pytestmark = pytest.mark.pgstac


@pytest.fixture(scope="module")
def postgres() -> Iterator[TemporaryPostgres]:
    with TemporaryPostgres() as server:
        yield server


class TestPgstacStacApi(StacApiContract):
    """The shared STAC API contract, served by stac-fastapi-pgstac."""

    @pytest.fixture(scope="class")
    @classmethod
    def stac_url(cls, data_dir: Path, postgres: TemporaryPostgres) -> Iterator[str]:
        load = load_catalog_pgstac(postgres.dsn, data_dir / "catalog")
        assert (load.collections, load.items) == (2, len(ITEMS))
        with running_stac_server(data_dir, "pgstac", dsn=postgres.dsn) as url:
            yield url


def _counts(dsn: str) -> tuple[int, int, int]:
    with psycopg.connect(dsn) as conn:
        items = conn.execute("SELECT count(*) FROM pgstac.items").fetchone()
        distinct = conn.execute(
            "SELECT count(DISTINCT (collection, id)) FROM pgstac.items"
        ).fetchone()
        collections = conn.execute("SELECT count(*) FROM pgstac.collections").fetchone()
    assert items and distinct and collections
    return int(items[0]), int(distinct[0]), int(collections[0])


def test_loading_twice_duplicates_nothing(postgres: TemporaryPostgres, tmp_path: Path) -> None:
    dsn = postgres.create_database("reload_twice")
    build_test_catalog(tmp_path)
    first = load_catalog_pgstac(dsn, tmp_path / "catalog")
    second = load_catalog_pgstac(dsn, tmp_path / "catalog")
    assert first.items == second.items == len(ITEMS)
    assert not first.skipped and not second.skipped
    assert _counts(dsn) == (len(ITEMS), len(ITEMS), 2)

    skipped = load_catalog_pgstac(dsn, tmp_path / "catalog", skip_if_unchanged=True)
    assert skipped.skipped and skipped.items == len(ITEMS)

    collection_path = tmp_path / "catalog" / "discharge" / "collection.json"
    doc = json.loads(collection_path.read_text())
    doc["links"] = [
        link for link in doc["links"] if not link["href"].endswith("/discharge-2020-07.json")
    ]
    collection_path.write_text(json.dumps(doc))
    pruned = load_catalog_pgstac(dsn, tmp_path / "catalog", skip_if_unchanged=True)
    assert not pruned.skipped and pruned.items == len(ITEMS) - 1
    assert _counts(dsn) == (len(ITEMS) - 1, len(ITEMS) - 1, 2)
    with psycopg.connect(dsn) as conn:
        ids = {row[0] for row in conn.execute("SELECT id FROM pgstac.items")}
    assert ids == ALL_IDS - {"discharge-2020-07"}


def test_dsn_becomes_stac_fastapi_connection_settings() -> None:
    settings = postgres_settings_from_dsn("postgresql://twin:s3cr%40t@db.internal:6543/cat")
    assert (settings.pguser, settings.pgpassword, settings.pghost) == (
        "twin",
        "s3cr@t",
        "db.internal",
    )
    assert (settings.pgport, settings.pgdatabase) == (6543, "cat")
    same = postgres_settings_from_dsn("host=127.0.0.1 port=5433 dbname=x user=postgres")
    assert (same.pghost, same.pgport, same.pgdatabase, same.pgpassword) == (
        "127.0.0.1",
        5433,
        "x",
        "",
    )
    with pytest.raises(ValueError, match="lacks"):
        postgres_settings_from_dsn("user=postgres")


def test_missing_binaries_name_the_debian_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(postgres_module.glob, "glob", lambda pattern: [])
    with pytest.raises(PostgresUnavailable, match="postgresql-15 postgresql-15-postgis-3"):
        find_postgres_bindir()


def test_temporary_postgres_is_private_and_cleaned_up() -> None:
    with TemporaryPostgres(dbname="private") as server:
        tmpdir, pid = server.tmpdir, server.pid
        assert tmpdir is not None and tmpdir.is_dir() and pid is not None
        assert server.dsn.startswith("postgresql://postgres@127.0.0.1:")
        with psycopg.connect(server.dsn) as conn:
            listen = conn.execute("SHOW listen_addresses").fetchone()
            assert listen == ("127.0.0.1",)
            assert conn.execute("SELECT current_database()").fetchone() == ("private",)
    assert not tmpdir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_new_result_item_is_upserted_without_reading_the_catalogue(
    postgres: TemporaryPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a worker does when it publishes a result on the pgstac backend: the item and
    its collection are upserted on their own, and the recorded fingerprint follows the
    catalogue (the next start-up loads nothing)."""
    from types import SimpleNamespace

    from twinmesh.core.settings import Settings, StacSettings
    from twinmesh.stac import results
    from twinmesh.stac.api import embedded
    from twinmesh.stac.api import pgstac as pgstac_module

    dsn = postgres.create_database("incremental")
    build_test_catalog(tmp_path)
    settings = Settings(
        data_dir=tmp_path, stac=StacSettings(backend="pgstac", port=0, pgstac_dsn=dsn)
    )
    load_catalog_pgstac(dsn, settings.catalog_dir)
    twin = SimpleNamespace(
        id="fulda", title="Fulda", license="CC-BY-4.0", keywords=[], bbox=(9, 50, 10.5, 51)
    )
    item = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": "result-a",
        "collection": "fulda-results",
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[9.0, 50.0], [10.5, 50.0], [10.5, 51.0], [9.0, 51.0], [9.0, 50.0]]],
        },
        "bbox": [9.0, 50.0, 10.5, 51.0],
        "properties": {
            "datetime": None,
            "start_datetime": "2022-01-01T00:00:00Z",
            "end_datetime": "2022-12-31T00:00:00Z",
        },
        "assets": {},
        "links": [],
    }

    def no_catalogue_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the whole catalogue was read to upsert one item")

    changes = results._add_to_static_catalog(settings.catalog_dir, twin, item)  # type: ignore[arg-type]
    with monkeypatch.context() as patch:
        patch.setattr(embedded, "read_catalog", no_catalogue_reading)
        patch.setattr(pgstac_module, "read_catalog", no_catalogue_reading)
        results._refresh_backend(settings, "fulda-results", "result-a", changes)
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT collection FROM pgstac.items WHERE id = 'result-a'").fetchone()
    assert row == ("fulda-results",)
    assert _counts(dsn) == (len(ITEMS) + 1, len(ITEMS) + 1, 3)
    skipped = load_catalog_pgstac(dsn, settings.catalog_dir, skip_if_unchanged=True)
    assert skipped.skipped, "the recorded fingerprint did not follow the catalogue"
