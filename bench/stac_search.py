"""Benchmark: STAC item search, embedded backend vs stac-fastapi-pgstac, over real HTTP.

Generates a static catalogue of 12,000 items (4 collections, one item a day each for
about 8 years, tiles of 0.5°-3° across Europe), loads it into the embedded SQLite
index and into pgstac on a private PostgreSQL (:class:`TemporaryPostgres`), serves
both with ``python -m twinmesh.stac.api.app`` on 127.0.0.1, and runs the same 800 searches
(bbox only, datetime only, collection+bbox+datetime, a CQL2 filter on a property with a
datetime; 200 each), each as GET and as POST, against each, interleaved. Prints one
table: p50/p95 latency per kind, the ratio embedded/pgstac,
load times and peak memory.

Run: ``.venv/bin/python bench/stac_search.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.helpers.postgres import TemporaryPostgres  # noqa: E402
from tests.helpers.stac_server import running_stac_server  # noqa: E402
from twinmesh.stac.api.embedded import load_catalog_embedded  # noqa: E402
from twinmesh.stac.api.pgstac import load_catalog_pgstac  # noqa: E402

__all__ = ["main"]

COLLECTIONS = ["precipitation", "river-discharge", "soil-moisture", "snow-cover"]
DAYS = 3000  # 2016-01-01 .. 2024-03-18
FIRST_DAY = datetime(2016, 1, 1, tzinfo=UTC)
EUROPE = (-10.0, 35.0, 30.0, 70.0)
QUERIES_PER_KIND = 200
WARMUP = 20
SEED = 20260101


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def write_catalog(catalog_dir: Path, rng: random.Random) -> int:
    """Write the static catalogue in pystac's self-contained layout; return the item count.

    Written directly as JSON rather than through pystac's object model, which would
    take longer than the benchmark itself for 12,000 items; the files are the same.
    """
    catalog_dir.mkdir(parents=True)
    catalog_links = [{"rel": "root", "href": "./catalog.json", "type": "application/json"}]
    n_items = 0
    for collection_id in COLLECTIONS:
        folder = catalog_dir / collection_id
        item_links = []
        for day in range(DAYS):
            start = FIRST_DAY + timedelta(days=day)
            width, height = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0)
            minx = rng.uniform(EUROPE[0], EUROPE[2] - width)
            miny = rng.uniform(EUROPE[1], EUROPE[3] - height)
            bbox = [round(minx, 4), round(miny, 4), round(minx + width, 4), round(miny + height, 4)]
            item_id = f"{collection_id}-{start:%Y%m%d}"
            item = {
                "type": "Feature",
                "stac_version": "1.1.0",
                "stac_extensions": [],
                "id": item_id,
                "collection": collection_id,
                "bbox": bbox,
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [
                            [bbox[0], bbox[1]],
                            [bbox[2], bbox[1]],
                            [bbox[2], bbox[3]],
                            [bbox[0], bbox[3]],
                            [bbox[0], bbox[1]],
                        ]
                    ],
                },
                "properties": {
                    "datetime": _iso(start),
                    "start_datetime": _iso(start),
                    "end_datetime": _iso(start + timedelta(days=1) - timedelta(seconds=1)),
                    "title": f"{collection_id} on {start:%Y-%m-%d}",
                    "cloud_cover": round(rng.uniform(0, 100), 1),
                },
                "assets": {
                    "zarr": {
                        "href": f"/data/store/{collection_id}.zarr",
                        "type": "application/vnd+zarr",
                        "roles": ["data", "zarr"],
                    }
                },
                "links": [
                    {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
                    {"rel": "parent", "href": "../collection.json", "type": "application/json"},
                    {"rel": "collection", "href": "../collection.json", "type": "application/json"},
                ],
            }
            item_dir = folder / item_id
            item_dir.mkdir(parents=True)
            (item_dir / f"{item_id}.json").write_bytes(orjson.dumps(item))
            item_links.append(
                {
                    "rel": "item",
                    "href": f"./{item_id}/{item_id}.json",
                    "type": "application/geo+json",
                }
            )
            n_items += 1
        collection = {
            "type": "Collection",
            "stac_version": "1.1.0",
            "id": collection_id,
            "title": f"{collection_id} (benchmark)",
            "description": "Generated for the twinmesh STAC search benchmark.",
            "license": "CC-BY-4.0",
            "extent": {
                "spatial": {"bbox": [list(EUROPE)]},
                "temporal": {
                    "interval": [[_iso(FIRST_DAY), _iso(FIRST_DAY + timedelta(days=DAYS))]]
                },
            },
            "links": [
                {"rel": "root", "href": "../catalog.json", "type": "application/json"},
                {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
                *item_links,
            ],
        }
        (folder / "collection.json").write_bytes(orjson.dumps(collection))
        catalog_links.append(
            {
                "rel": "child",
                "href": f"./{collection_id}/collection.json",
                "type": "application/json",
            }
        )
    catalog = {
        "type": "Catalog",
        "stac_version": "1.1.0",
        "id": "twinmesh-bench",
        "description": "Generated for the twinmesh STAC search benchmark.",
        "links": catalog_links,
    }
    (catalog_dir / "catalog.json").write_bytes(orjson.dumps(catalog))
    return n_items


def make_queries(rng: random.Random) -> list[tuple[str, dict[str, str]]]:
    """The same searches for both servers, as GET /search parameters."""

    def bbox(size: float) -> str:
        x = rng.uniform(EUROPE[0], EUROPE[2] - size)
        y = rng.uniform(EUROPE[1], EUROPE[3] - size)
        return f"{x:.3f},{y:.3f},{x + size:.3f},{y + size:.3f}"

    def window(days: int) -> str:
        start = FIRST_DAY + timedelta(days=rng.randrange(DAYS - days))
        return f"{_iso(start)}/{_iso(start + timedelta(days=days))}"

    queries: list[tuple[str, dict[str, str]]] = []
    for _ in range(QUERIES_PER_KIND):
        queries.append(("bbox", {"bbox": bbox(rng.uniform(2, 6)), "limit": "10"}))
        queries.append(("datetime", {"datetime": window(rng.randrange(7, 60)), "limit": "10"}))
        queries.append(
            (
                "collection+bbox+datetime",
                {
                    "collections": rng.choice(COLLECTIONS),
                    "bbox": bbox(rng.uniform(5, 15)),
                    "datetime": window(rng.randrange(90, 365)),
                    "limit": "10",
                },
            )
        )
        queries.append(
            (
                "CQL2 filter (property + datetime)",
                {
                    "filter": f"cloud_cover < {rng.uniform(5, 40):.1f} AND "
                    f"collection = '{rng.choice(COLLECTIONS)}'",
                    "datetime": window(rng.randrange(180, 720)),
                    "limit": "10",
                },
            )
        )
    return queries


def as_post_body(params: dict[str, str]) -> dict[str, Any]:
    """The same search as a POST /search body."""
    import cql2

    body: dict[str, Any] = {"limit": int(params["limit"])}
    if "bbox" in params:
        body["bbox"] = [float(v) for v in params["bbox"].split(",")]
    if "collections" in params:
        body["collections"] = params["collections"].split(",")
    if "datetime" in params:
        body["datetime"] = params["datetime"]
    if "filter" in params:
        body["filter"] = cql2.parse_text(params["filter"]).to_json()
    return body


@contextlib.contextmanager
def serve(data_dir: Path, backend: str, dsn: str | None = None) -> Iterator[tuple[str, int]]:
    """Run the STAC API as its own process on 127.0.0.1; yield (url, pid)."""
    with running_stac_server(data_dir, backend, dsn=dsn) as server:
        yield server.url, server.pid


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a running process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def postgres_rss_mb(postmaster_pid: int) -> float:
    """Resident memory of the postmaster and its children (shared buffers counted once)."""
    pids = [postmaster_pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{postmaster_pid}/task/{postmaster_pid}/children").read_text()
        pids += [int(p) for p in children.split()]
    private = 0
    shared = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                name, _, rest = line.partition(":")
                if name in ("Private_Clean", "Private_Dirty"):
                    private += int(rest.split()[0])
                elif name in ("Shared_Clean", "Shared_Dirty"):
                    shared = max(shared, int(rest.split()[0]))
    return (private + shared) / 1024


def _timed_get(
    client: httpx.Client, params: dict[str, str], method: str = "GET"
) -> tuple[float, list[str]]:
    started = time.perf_counter()
    if method == "POST":
        response = client.post("/search", json=as_post_body(params))
    else:
        response = client.get("/search", params=params)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed, [f["id"] for f in response.json()["features"]]


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    rng = random.Random(SEED)
    work = Path(tempfile.mkdtemp(prefix="twinmesh-bench-stac-"))
    try:
        data_dir = work / "data"
        started = time.perf_counter()
        n_items = write_catalog(data_dir / "catalog", rng)
        print(f"wrote {n_items} items in {time.perf_counter() - started:.1f}s", file=sys.stderr)

        embedded_load = load_catalog_embedded(data_dir / "stac-index.sqlite", data_dir / "catalog")
        queries = make_queries(rng)
        with TemporaryPostgres() as pg:
            pgstac_load = load_catalog_pgstac(pg.dsn, data_dir / "catalog")
            assert pg.pid is not None
            with (
                serve(data_dir, "embedded") as (embedded_url, embedded_pid),
                serve(data_dir, "pgstac", pg.dsn) as (pgstac_url, pgstac_pid),
                httpx.Client(base_url=embedded_url, timeout=60) as embedded,
                httpx.Client(base_url=pgstac_url, timeout=60) as pgstac,
            ):
                for _, params in queries[:WARMUP]:
                    _timed_get(embedded, params)
                    _timed_get(pgstac, params)
                times: dict[str, dict[str, list[float]]] = {}
                same = 0
                for kind, params in queries:
                    for method in ("GET", "POST"):
                        t_embedded, ids_embedded = _timed_get(embedded, params, method)
                        t_pgstac, ids_pgstac = _timed_get(pgstac, params, method)
                        same += sorted(ids_embedded) == sorted(ids_pgstac)
                        slot = times.setdefault(
                            f"{method} /search {kind}", {"embedded": [], "pgstac": []}
                        )
                        slot["embedded"].append(t_embedded)
                        slot["pgstac"].append(t_pgstac)
                memory = {
                    "embedded": peak_rss_mb(embedded_pid),
                    "pgstac": peak_rss_mb(pgstac_pid),
                    "postgres": postgres_rss_mb(pg.pid),
                }
        print_table(n_items, times, embedded_load, pgstac_load, memory, same, 2 * len(queries))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_table(
    n_items: int,
    times: dict[str, dict[str, list[float]]],
    embedded_load: Any,
    pgstac_load: Any,
    memory: dict[str, float],
    same: int,
    total: int,
) -> None:
    rows = [
        (
            "query kind",
            "embedded p50 ms",
            "embedded p95 ms",
            "pgstac p50 ms",
            "pgstac p95 ms",
            "ratio p50 (emb/pg)",
        )
    ]
    for kind, slot in times.items():
        e50, e95 = _p(slot["embedded"], 50), _p(slot["embedded"], 95)
        g50, g95 = _p(slot["pgstac"], 50), _p(slot["pgstac"], 95)
        rows.append(
            (
                f"{kind} (n={len(slot['embedded'])})",
                f"{e50:.1f}",
                f"{e95:.1f}",
                f"{g50:.1f}",
                f"{g95:.1f}",
                f"{e50 / g50:.2f}",
            )
        )
    rows.append(
        (
            f"load catalogue, {n_items} items (s)",
            f"{embedded_load.seconds:.1f}",
            "",
            f"{pgstac_load.seconds:.1f}",
            "",
            f"{embedded_load.seconds / pgstac_load.seconds:.2f}",
        )
    )
    pg_total = memory["pgstac"] + memory["postgres"]
    rows.append(
        (
            "peak RSS of the serving processes (MB)",
            f"{memory['embedded']:.0f}",
            "",
            f"{pg_total:.0f}",
            "",
            f"{memory['embedded'] / pg_total:.2f}",
        )
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
        if n == 0:
            print("-+-".join("-" * w for w in widths))
    bench_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\npgstac column memory = API process {memory['pgstac']:.0f} MB + PostgreSQL "
        f"{memory['postgres']:.0f} MB; benchmark process peak {bench_rss:.0f} MB. "
        f"Same result ids on {same}/{total} searches. "
        f"{os.cpu_count()} CPUs, sequential requests over keep-alive connections."
    )


if __name__ == "__main__":
    main()
