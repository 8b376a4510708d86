"""The embedded STAC API backend (SQLite index, no server) on a real catalogue.

The STAC API contract runs against ``python -m twinmesh.stac.api.app`` on 127.0.0.1; the
tests below it cover what only the embedded backend has: its index build (atomic,
only when the catalogue changed, visible to a running server) and direct property
tests of its search and keyset paging against a brute-force filter.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stac_api_contract import (
    ALL_IDS,
    ITEMS,
    SEARCH_CASES,
    StacApiContract,
    brute_force_ids,
    build_test_catalog,
    random_searches,
    running_stac_server,
)
from stac_fastapi.types.errors import InvalidQueryParameter

from twinmesh.core.settings import Settings, StacSettings
from twinmesh.stac.api import embedded
from twinmesh.stac.api.app import create_app, embedded_index_path, load_catalog
from twinmesh.stac.api.embedded import (
    EmbeddedIndex,
    catalog_fingerprint,
    index_fingerprint,
    load_catalog_embedded,
    make_search_query,
)


class TestEmbeddedStacApi(StacApiContract):
    """The shared STAC API contract, served by the embedded backend."""

    @pytest.fixture(scope="class")
    @classmethod
    def stac_url(cls, data_dir: Path) -> Iterator[str]:
        with running_stac_server(data_dir, "embedded") as url:
            yield url

    def test_a_literal_false_filter_matches_nothing(self, http: httpx.Client) -> None:
        """The issue's reproduction. (stac-fastapi-pgstac answers a 400 here: its GET
        handler turns the text into JSON ``false`` and its POST model wants an object.)"""
        response = http.get(
            "/collections/discharge/items", params={"filter": "false", "fields": "id"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["features"] == []

    def test_index_was_built_at_start_up(self, stac_url: str, data_dir: Path) -> None:
        index = data_dir / "stac-index.sqlite"
        assert index_fingerprint(index) == catalog_fingerprint(data_dir / "catalog")

    def test_concurrent_searches_are_answered_correctly(self, stac_url: str) -> None:
        def run(case_index: int) -> bool:
            case = SEARCH_CASES[case_index % len(SEARCH_CASES)]
            with httpx.Client(base_url=stac_url, timeout=30) as client:
                body = client.post("/search", json={**case.params, "limit": 100}).json()
            return {f["id"] for f in body["features"]} == case.expected

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert all(pool.map(run, range(64)))


# --------------------------------------------------------------------------------------
# The index itself
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built_index(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedIndex:
    data_dir = tmp_path_factory.mktemp("stac-index")
    build_test_catalog(data_dir)
    path = data_dir / "stac-index.sqlite"
    load = load_catalog_embedded(path, data_dir / "catalog")
    assert (load.collections, load.items) == (2, len(ITEMS))
    return EmbeddedIndex(path)


def _search_all(index: EmbeddedIndex, params: dict[str, Any], limit: int) -> list[str]:
    ids: list[str] = []
    token = None
    for _ in range(100):
        page = index.search(make_search_query(**params, limit=limit, token=token))
        assert len(page.items) <= limit
        ids += [item["id"] for item in page.items]
        token = page.next_token
        if token is None:
            return ids
    raise AssertionError("paging did not end")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=random_searches())
def test_index_search_matches_brute_force(built_index: EmbeddedIndex, params: dict) -> None:
    assert frozenset(_search_all(built_index, params, limit=100)) == brute_force_ids(**params)


@settings(max_examples=150, deadline=None)
@given(
    params=random_searches(),
    limit=st.integers(1, 8),
    sortby=st.sampled_from(
        [None, "datetime", "-datetime", "-end_datetime,id", "collection,-id", "+start_datetime"]
    ),
)
def test_keyset_paging_returns_every_match_once(
    built_index: EmbeddedIndex, params: dict, limit: int, sortby: str | None
) -> None:
    ids = _search_all(built_index, {**params, "sortby": sortby}, limit=limit)
    assert len(ids) == len(set(ids))
    assert frozenset(ids) == brute_force_ids(**params)


@contextlib.contextmanager
def _every_bbox_wide() -> Iterator[None]:
    """Make every bbox take the path of a bbox that overlaps many items (the sort
    order walked, each row's box tested), which the small test catalogue never would."""
    saved = embedded._WIDE_MATCHES, embedded._WIDE_PAGES
    embedded._WIDE_MATCHES, embedded._WIDE_PAGES = 0, 0
    try:
        yield
    finally:
        embedded._WIDE_MATCHES, embedded._WIDE_PAGES = saved


@settings(max_examples=150, deadline=None)
@given(
    params=random_searches(),
    limit=st.integers(1, 8),
    sortby=st.sampled_from([None, "datetime", "-end_datetime,id", "-rank"]),
)
def test_a_wide_bbox_walked_in_sort_order_finds_the_same_pages(
    built_index: EmbeddedIndex, params: dict, limit: int, sortby: str | None
) -> None:
    narrow = _search_all(built_index, {**params, "sortby": sortby}, limit=limit)
    with _every_bbox_wide():
        wide = _search_all(built_index, {**params, "sortby": sortby}, limit=limit)
    assert wide == narrow
    assert frozenset(wide) == brute_force_ids(**params)


def test_index_search_sorts_by_datetime(built_index: EmbeddedIndex) -> None:
    items = built_index.search(make_search_query(limit=100, sortby="datetime")).items
    keys = [embedded.item_time_range_us(i["properties"])[0] for i in items]  # type: ignore[index]
    assert keys == sorted(keys) and len(items) == len(ALL_IDS)


@pytest.mark.parametrize(
    "bad",
    [
        {"bbox": [1, 2, 3]},
        {"bbox": [5, 1, 1, 0]},
        {"bbox": [0, 0, 1, 91]},
        {"bbox": [170, 0, -181, 1]},
        {"bbox": "1,x,3,4"},
        {"datetime": "2020-13-01T00:00:00Z"},
        {"datetime": "2021-01-01T00:00:00Z/2020-01-01T00:00:00Z"},
        {"datetime": "2020-02-30"},
        {"datetime": "2020-1-1"},
        {"datetime": "2021-01-01/2020-12-31"},
        {"intersects": '{"type": "Polygon"}'},
        {"sortby": "-cloud cover"},
        {"token": "not-a-token"},
        {"limit": 0},
    ],
    ids=str,
)
def test_bad_parameters_are_rejected_with_a_reason(
    built_index: EmbeddedIndex, bad: dict[str, Any]
) -> None:
    with pytest.raises(InvalidQueryParameter) as err:
        built_index.search(make_search_query(**bad))
    assert len(str(err.value)) > 10


@pytest.mark.parametrize(
    "value",
    [
        "1985-01-01",
        "1985-01-01/1985-12-31",
        "../1985-12-31",
        "1985-01-01T00:00:00",  # no offset: not RFC 3339
        "19850101",
        "1985-W01-1",
        "9999-12-31T23:59:59-23:59",  # in UTC: year 10000
        "0001-01-01T00:00:00+01:00",  # in UTC: year 0
    ],
)
def test_only_rfc3339_date_times_parse(value: str) -> None:
    with pytest.raises(InvalidQueryParameter) as err:
        embedded.parse_datetime_interval(value)
    assert "RFC 3339" in str(err.value) or "out of range" in str(err.value)


def test_offsets_are_the_same_moment_in_utc() -> None:
    assert embedded.parse_datetime_interval(
        "2020-02-29T01:00:00+01:00/2020-02-29T23:59:59Z"
    ) == embedded.parse_datetime_interval("2020-02-29T00:00:00Z/2020-02-29T23:59:59Z")


@pytest.mark.parametrize(
    ("bbox", "parts"),
    [
        ((1.0, 2.0, 3.0, 4.0), [(1.0, 2.0, 3.0, 4.0)]),
        (
            (170.0, -10.0, -170.0, 10.0),
            [(170.0, -10.0, 180.0, 10.0), (-180.0, -10.0, -170.0, 10.0)],
        ),
        (
            (180.0, -10.0, -180.0, 10.0),
            [(180.0, -10.0, 180.0, 10.0), (-180.0, -10.0, -180.0, 10.0)],
        ),
    ],
)
def test_a_bbox_across_the_antimeridian_has_two_parts(
    bbox: tuple[float, float, float, float], parts: list[tuple[float, float, float, float]]
) -> None:
    assert embedded.parse_bbox(list(bbox)) == bbox
    assert embedded.bbox_parts(bbox) == parts
    geometry = embedded.bbox_geometry(bbox)
    assert geometry.is_valid and len(getattr(geometry, "geoms", [geometry])) == len(parts)


def test_a_crash_during_the_build_keeps_the_old_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_test_catalog(tmp_path)
    path = tmp_path / "stac-index.sqlite"
    load_catalog_embedded(path, tmp_path / "catalog")
    before = path.read_bytes()
    calls = {"n": 0}
    real_row = embedded._item_row

    def failing_row(item: dict[str, Any]) -> Any:
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError("disk full (simulated)")
        return real_row(item)

    monkeypatch.setattr(embedded, "_item_row", failing_row)
    with pytest.raises(OSError, match="simulated"):
        load_catalog_embedded(path, tmp_path / "catalog")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    page = EmbeddedIndex(path).search(make_search_query(limit=100))
    assert {i["id"] for i in page.items} == ALL_IDS


def _settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, stac=StacSettings(backend="embedded", port=0))


def _remove_item(catalog_dir: Path, collection_id: str, item_id: str) -> None:
    """Drop an item from the static catalogue, as a rebuild without it would."""
    collection_path = catalog_dir / collection_id / "collection.json"
    doc = json.loads(collection_path.read_text())
    doc["links"] = [
        link
        for link in doc["links"]
        if not (link["rel"] == "item" and link["href"].endswith(f"/{item_id}.json"))
    ]
    collection_path.write_text(json.dumps(doc))


def test_start_up_rebuilds_only_when_the_catalogue_changed(tmp_path: Path) -> None:
    build_test_catalog(tmp_path)
    settings = _settings(tmp_path)
    index = embedded_index_path(settings)
    with TestClient(create_app(settings)) as client:
        assert client.get("/collections").status_code == 200
    first = os.stat(index)
    with TestClient(create_app(settings)) as client:
        assert len(client.post("/search", json={"limit": 100}).json()["features"]) == len(ITEMS)
    assert os.stat(index).st_ino == first.st_ino, "unchanged catalogue, yet the index was rebuilt"
    for path in settings.catalog_dir.rglob("*.json"):  # rewritten with the same bytes
        path.write_bytes(path.read_bytes())
    with TestClient(create_app(settings)):
        pass
    assert os.stat(index).st_ino == first.st_ino, "identical catalogue, yet the index was rebuilt"
    _remove_item(settings.catalog_dir, "discharge", "discharge-2020-01")
    with TestClient(create_app(settings)) as client:
        ids = {f["id"] for f in client.post("/search", json={"limit": 100}).json()["features"]}
    assert os.stat(index).st_ino != first.st_ino
    assert ids == ALL_IDS - {"discharge-2020-01"}


def test_a_running_server_serves_a_reloaded_catalogue(tmp_path: Path) -> None:
    build_test_catalog(tmp_path)
    settings = _settings(tmp_path)
    with TestClient(create_app(settings)) as client:

        def ids() -> set[str]:
            body = client.get("/search", params={"limit": 100}).json()
            return {f["id"] for f in body["features"]}

        assert ids() == ALL_IDS
        _remove_item(settings.catalog_dir, "soil-moisture", "soil-moisture-alps")
        load = load_catalog(settings)
        assert load.items == len(ITEMS) - 1
        assert ids() == ALL_IDS - {"soil-moisture-alps"}
        missing = client.get("/collections/soil-moisture/items/soil-moisture-alps")
        assert missing.status_code == 404 and missing.json()["code"] == "NotFoundError"


def test_without_a_catalogue_the_api_says_what_to_do(tmp_path: Path) -> None:
    with TestClient(create_app(_settings(tmp_path))) as client:
        assert client.get("/").status_code == 200
        response = client.get("/collections")
    assert response.status_code == 503
    assert response.json()["code"] == "DataNotReady"
    assert "catalogue" in response.json()["description"]


def test_public_url_is_used_for_links(tmp_path: Path) -> None:
    build_test_catalog(tmp_path)
    settings = Settings(
        data_dir=tmp_path, stac=StacSettings(public_url="https://mesh.example.org/stac")
    )
    with TestClient(create_app(settings)) as client:
        item = client.get("/collections/discharge/items/discharge-2020-02").json()
        links = {link["rel"]: link["href"] for link in item["links"]}
        assert links["self"] == (
            "https://mesh.example.org/stac/collections/discharge/items/discharge-2020-02"
        )
        assert links["root"] == "https://mesh.example.org/stac/"
        page = client.get("/search", params={"limit": 2}).json()
        nxt = next(link for link in page["links"] if link["rel"] == "next")
        assert nxt["href"].startswith("https://mesh.example.org/stac/search?")


def test_index_reads_are_thread_safe(built_index: EmbeddedIndex) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for i in range(40):
                case = SEARCH_CASES[(n + i) % len(SEARCH_CASES)]
                page = built_index.search(make_search_query(**case.params, limit=100))
                assert {item["id"] for item in page.items} == case.expected
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except FileNotFoundError:  # exited meanwhile
        return ""


def test_serve_runs_several_worker_processes(tmp_path: Path) -> None:
    """stac.workers = 2: two server processes share the port, the index is built once
    (before they start), and concurrent searches are all answered."""
    from tests.helpers.stac_server import running_stac_server as start

    build_test_catalog(tmp_path)
    with start(tmp_path, "embedded", workers=2) as server:

        def workers() -> list[str]:
            children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text()
            return [c for c in children.split() if "spawn_main" in _cmdline(c)]

        # The first worker may answer the readiness check while the second still starts
        # (seconds on a loaded machine).
        deadline = time.monotonic() + 60
        while len(workers()) < 2 or server.log_path.read_text().count("is up to date") < 2:
            assert time.monotonic() < deadline, (workers(), server.log_path.read_text()[-2000:])
            time.sleep(0.2)
        assert len(workers()) == 2

        def search(_: int) -> int:
            return httpx.post(f"{server.url}/search", json={"limit": 5}, timeout=30).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(search, range(40))) == {200}
        # Built once by the parent; each worker found it unchanged.
        assert server.log_path.read_text().count("is up to date") == 2


def _index_contents(db_path: Path) -> tuple[list[Any], list[Any], str | None]:
    import sqlite3

    conn = sqlite3.connect(db_path)
    try:
        collections = conn.execute(
            "SELECT id, position, doc FROM collections ORDER BY id"
        ).fetchall()
        items = conn.execute(
            "SELECT i.collection, i.id, i.dt_us, i.start_us, i.end_us, i.minx, i.miny, i.maxx,"
            " i.maxy, i.is_box, i.geom, i.doc, r.minx, r.maxx, r.miny, r.maxy FROM items i"
            " LEFT JOIN items_rtree r ON r.id = i.rowid ORDER BY i.collection, i.id"
        ).fetchall()
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        conn.close()
    return collections, items, meta.get("max_duration_us")


def _result_item(item_id: str, collection: str, start: str, end: str) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": collection,
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[9.0, 50.0], [10.5, 50.0], [10.5, 51.0], [9.0, 51.0], [9.0, 50.0]]],
        },
        "bbox": [9.0, 50.0, 10.5, 51.0],
        "properties": {"datetime": None, "start_datetime": start, "end_datetime": end},
        "assets": {},
        "links": [],
    }


def test_a_new_result_item_is_indexed_without_reading_the_catalogue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a worker does when it publishes a result: the item (into an existing
    collection, then into a new one) is added to the index on its own, and the index
    is then the one a full rebuild makes, fingerprint included (no rebuild at start)."""
    from types import SimpleNamespace

    from twinmesh.stac import results

    build_test_catalog(tmp_path)
    settings = _settings(tmp_path)
    db_path = embedded_index_path(settings)
    load_catalog_embedded(db_path, settings.catalog_dir)
    twin = SimpleNamespace(
        id="fulda",
        title="Fulda",
        license="CC-BY-4.0",
        keywords=["hydrology"],
        bbox=(9, 50, 10.5, 51),
    )

    def no_catalogue_reading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the whole catalogue was read to index one item")

    new_items = [
        _result_item("result-a", "discharge", "2021-03-01T00:00:00Z", "2021-03-10T00:00:00Z"),
        _result_item("result-b", "fulda-results", "2022-01-01T00:00:00Z", "2023-06-30T00:00:00Z"),
    ]
    for item in new_items:
        changes = results._add_to_static_catalog(settings.catalog_dir, twin, item)  # type: ignore[arg-type]
        with monkeypatch.context() as patch:
            patch.setattr(embedded, "read_catalog", no_catalogue_reading)
            patch.setattr(embedded, "load_catalog_embedded", no_catalogue_reading)
            results._refresh_backend(settings, item["collection"], item["id"], changes)
        assert index_fingerprint(db_path) == catalog_fingerprint(settings.catalog_dir)
    rebuilt = tmp_path / "rebuilt.sqlite"
    load_catalog_embedded(rebuilt, settings.catalog_dir)
    assert _index_contents(db_path) == _index_contents(rebuilt)
    with TestClient(create_app(settings)) as client:
        body = client.post("/search", json={"ids": ["result-a", "result-b"]}).json()
        assert sorted(f["id"] for f in body["features"]) == ["result-a", "result-b"]
        long_one = client.get("/search", params={"datetime": "2023-01-01T00:00:00Z"}).json()
        assert [f["id"] for f in long_one["features"]] == ["result-b"]
