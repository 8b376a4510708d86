"""Benchmark: STAC item search, embedded backend vs stac-fastapi-pgstac vs rustac, over
real HTTP.

For each catalogue size (10,000 and 100,000 items by default) the benchmark writes a
static catalogue (4 collections, items spread over about 8 years, tiles of 0.5°-3°
across Europe), loads it into the embedded SQLite index, into pgstac on a private
PostgreSQL (:class:`TemporaryPostgres`) and into ``rustac serve`` (its in-memory
backend, from the same items as ndjson), and serves the first two with
``python -m twinmesh.stac.api.app`` on 127.0.0.1. Then:

1. latency at concurrency 1: the same searches of five kinds (bbox, a wide bbox that
   matches ~20 % of the items, datetime, collection+bbox+datetime, a CQL2 filter on a
   property and the collection with a datetime), each as GET and as POST, interleaved
   across the servers; p50/p95 per kind. rustac is asked POST only (its GET /search
   with ``collections``/``bbox`` is a 500) and no CQL2 filter (its in-memory backend
   answers one wrongly; see UPSTREAM-NOTES).
2. load: a fixed mix of the kinds (GET and POST alternating) at concurrency 1, 16 and
   64 for a fixed time; req/s and p99 per backend, with the STAC server at 1 worker and
   at ``--workers`` workers; then the mix without the CQL2 kind, POST only for rustac
   (one multi-threaded process), at 1 worker.
3. load times (embedded index build, pgstac load, rustac start-up until it answers) and
   the peak RSS of each server.

Prints one table per size with the ratios embedded/pgstac and embedded/rustac;
``--markdown PATH`` also writes the tables as Markdown.

Run: ``.venv/bin/python bench/stac_search.py`` (about 20 minutes on 2 shared cores), or
``--quick`` (10,000 items, fewer queries, ~1-2 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.helpers.postgres import TemporaryPostgres  # noqa: E402
from tests.helpers.processes import serving_process  # noqa: E402
from tests.helpers.stac_server import free_port, running_stac_server  # noqa: E402
from twinmesh.stac.api.embedded import load_catalog_embedded  # noqa: E402
from twinmesh.stac.api.pgstac import load_catalog_pgstac  # noqa: E402

__all__ = ["main"]

COLLECTIONS = ["precipitation", "river-discharge", "soil-moisture", "snow-cover"]
DAYS = 3000  # 2016-01-01 .. 2024-03-18
FIRST_DAY = datetime(2016, 1, 1, tzinfo=UTC)
EUROPE = (-10.0, 35.0, 30.0, 70.0)
WIDE_BBOX = (15.0, 13.0)  # degrees; intersects ~19 % of the tiles
SEED = 20260101
KINDS = (
    "bbox",
    "wide bbox (~20 %)",
    "datetime",
    "collection+bbox+datetime",
    "CQL2 filter (property + collection) + datetime",
)
CQL2_KIND = KINDS[4]
BACKENDS = ("embedded", "pgstac", "rustac")
CONCURRENCY = (1, 16, 64)
RUSTAC = Path(sys.executable).with_name("rustac")
#: rustac must not download anything: every proxy variable points at a closed port.
NO_NETWORK = {
    key: "http://127.0.0.1:9"
    for key in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
}


@dataclass(frozen=True)
class Config:
    queries_per_kind: int
    warmup: int
    load_seconds: float
    workers: int
    rustac: bool


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------------------
def write_catalog(
    catalog_dir: Path, rustac_dir: Path, n_items: int, rng: random.Random
) -> tuple[int, list[tuple[float, float, float, float]]]:
    """Write the static catalogue in pystac's self-contained layout, and the same items
    as one ndjson per collection (plus the collection documents) for rustac.

    Written directly as JSON rather than through pystac's object model, which would
    take longer than the benchmark itself; the files are the same. Every item has its
    own datetime (no ties in the default sort). Returns the item count and the bboxes.
    """
    catalog_dir.mkdir(parents=True)
    rustac_dir.mkdir(parents=True)
    catalog_links = [{"rel": "root", "href": "./catalog.json", "type": "application/json"}]
    per_collection = n_items // len(COLLECTIONS)
    step_s = DAYS * 86400 // per_collection
    bboxes: list[tuple[float, float, float, float]] = []
    for c_index, collection_id in enumerate(COLLECTIONS):
        folder = catalog_dir / collection_id
        item_links = []
        ndjson = []
        for i in range(per_collection):
            start = FIRST_DAY + timedelta(seconds=i * step_s + c_index)
            width, height = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0)
            minx = rng.uniform(EUROPE[0], EUROPE[2] - width)
            miny = rng.uniform(EUROPE[1], EUROPE[3] - height)
            bbox = (round(minx, 4), round(miny, 4), round(minx + width, 4), round(miny + height, 4))
            bboxes.append(bbox)
            item_id = f"{collection_id}-{start:%Y%m%d}-{i:06d}"
            item: dict[str, Any] = {
                "type": "Feature",
                "stac_version": "1.1.0",
                "stac_extensions": [],
                "id": item_id,
                "collection": collection_id,
                "bbox": list(bbox),
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
                "links": [],
            }
            ndjson.append(orjson.dumps(item))
            item["links"] = [
                {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
                {"rel": "parent", "href": "../collection.json", "type": "application/json"},
                {"rel": "collection", "href": "../collection.json", "type": "application/json"},
            ]
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
        collection: dict[str, Any] = {
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
            "links": [],
        }
        (rustac_dir / f"{collection_id}.json").write_bytes(orjson.dumps(collection))
        (rustac_dir / f"{collection_id}-items.ndjson").write_bytes(b"\n".join(ndjson) + b"\n")
        collection["links"] = [
            {"rel": "root", "href": "../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
            *item_links,
        ]
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
    return len(bboxes), bboxes


# --------------------------------------------------------------------------------------
# The searches
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Search:
    kind: str
    params: dict[str, str]  # GET /search
    body: dict[str, Any]  # POST /search, the same search


def make_searches(rng: random.Random, per_kind: int) -> list[Search]:
    """The same searches for every server, kinds interleaved."""
    import cql2

    def bbox(width: float, height: float) -> str:
        x = rng.uniform(EUROPE[0], EUROPE[2] - width)
        y = rng.uniform(EUROPE[1], EUROPE[3] - height)
        return f"{x:.3f},{y:.3f},{x + width:.3f},{y + height:.3f}"

    def window(days: int) -> str:
        start = FIRST_DAY + timedelta(days=rng.randrange(DAYS - days))
        return f"{_iso(start)}/{_iso(start + timedelta(days=days))}"

    def search(kind: str, params: dict[str, str]) -> Search:
        body: dict[str, Any] = {"limit": int(params["limit"])}
        if "bbox" in params:
            body["bbox"] = [float(v) for v in params["bbox"].split(",")]
        if "collections" in params:
            body["collections"] = params["collections"].split(",")
        if "datetime" in params:
            body["datetime"] = params["datetime"]
        if "filter" in params:
            body["filter"] = cql2.parse_text(params["filter"]).to_json()
            body["filter-lang"] = "cql2-json"
        return Search(kind, params, body)

    searches: list[Search] = []
    for _ in range(per_kind):
        size = rng.uniform(2, 6)
        searches.append(search(KINDS[0], {"bbox": bbox(size, size), "limit": "10"}))
        searches.append(search(KINDS[1], {"bbox": bbox(*WIDE_BBOX), "limit": "10"}))
        searches.append(search(KINDS[2], {"datetime": window(rng.randrange(7, 60)), "limit": "10"}))
        size = rng.uniform(5, 15)
        searches.append(
            search(
                KINDS[3],
                {
                    "collections": rng.choice(COLLECTIONS),
                    "bbox": bbox(size, size),
                    "datetime": window(rng.randrange(90, 365)),
                    "limit": "10",
                },
            )
        )
        searches.append(
            search(
                KINDS[4],
                {
                    "filter": f"cloud_cover < {rng.uniform(5, 40):.1f} AND "
                    f"collection = '{rng.choice(COLLECTIONS)}'",
                    "datetime": window(rng.randrange(180, 720)),
                    "limit": "10",
                },
            )
        )
    return searches


def wide_bbox_fraction(
    searches: list[Search], bboxes: list[tuple[float, float, float, float]]
) -> tuple[float, float, float]:
    """Mean, min and max fraction of the items a wide-bbox search matches (brute force)."""
    import numpy as np

    boxes = np.asarray(bboxes)
    fractions = []
    for s in searches:
        if s.kind != KINDS[1]:
            continue
        minx, miny, maxx, maxy = s.body["bbox"]
        hit = (
            (boxes[:, 0] <= maxx)
            & (boxes[:, 2] >= minx)
            & (boxes[:, 1] <= maxy)
            & (boxes[:, 3] >= miny)
        )
        fractions.append(float(hit.mean()))
    return statistics.mean(fractions), min(fractions), max(fractions)


# --------------------------------------------------------------------------------------
# Servers and measurements
# --------------------------------------------------------------------------------------
@contextlib.contextmanager
def rustac_server(rustac_dir: Path, log_path: Path) -> Iterator[tuple[str, int]]:
    """``rustac serve`` (in-memory backend) with the collections and their ndjson items,
    on 127.0.0.1 on a free port, without network access; yield (url, pid)."""
    port = free_port()
    hrefs = sorted(str(p) for p in rustac_dir.glob("*.json"))
    hrefs += sorted(str(p) for p in rustac_dir.glob("*.ndjson"))
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(NO_NETWORK)
    url = f"http://127.0.0.1:{port}"
    with serving_process(
        [str(RUSTAC), "serve", "--addr", f"127.0.0.1:{port}", *hrefs],
        env=env,
        cwd=rustac_dir,
        log_path=log_path,
        health_url=f"{url}/",
        name="rustac server",
        timeout_s=600,
    ) as proc:
        yield url, proc.pid


def _vm_hwm_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def tree_peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process plus that of its children, in MB."""
    return sum(_vm_hwm_kb(p) for p in [pid, *_children(pid)]) / 1024


def postgres_rss_mb(postmaster_pid: int) -> float:
    """Resident memory of the postmaster and its children (shared buffers counted once)."""
    private = 0
    shared = 0
    for pid in [postmaster_pid, *_children(postmaster_pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                name, _, rest = line.partition(":")
                if name in ("Private_Clean", "Private_Dirty"):
                    private += int(rest.split()[0])
                elif name in ("Shared_Clean", "Shared_Dirty"):
                    shared = max(shared, int(rest.split()[0]))
    return (private + shared) / 1024


def _timed(client: httpx.Client, search: Search, method: str) -> tuple[float, list[str]]:
    started = time.perf_counter()
    if method == "POST":
        response = client.post("/search", json=search.body)
    else:
        response = client.get("/search", params=search.params)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed, [f["id"] for f in response.json()["features"]]


def _p(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _methods(backend: str, kind: str = "") -> tuple[str, ...]:
    """What a backend is asked: rustac only POST, and no CQL2 filter (its in-memory
    backend answers a CQL2 filter wrongly, see the notes)."""
    if backend == "rustac":
        return () if kind == CQL2_KIND else ("POST",)
    return ("GET", "POST")


#: The 1-minute load average sampled during a run: how busy the shared machine was.
LOADAVG: list[float] = []
MIX_ALL = "mix of the 5 kinds"
MIX_NO_CQL2 = "mix without CQL2"


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def p99(self) -> float:
        return _p(self.latencies_ms, 99)


async def _load(
    url: str, searches: list[Search], methods: tuple[str, ...], concurrency: int, seconds: float
) -> LoadResult:
    """``concurrency`` clients send the searches in a fixed order (methods alternating)
    for ``seconds``; every request started before the deadline is counted."""
    plan = [(m, s) for s, m in zip(searches, itertools.cycle(methods), strict=False)]
    counter = itertools.count()
    latencies: list[float] = []
    errors = 0
    error_kinds: dict[str, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        deadline = time.perf_counter() + seconds

        async def client_loop() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                method, search = plan[next(counter) % len(plan)]
                started = time.perf_counter()
                try:
                    if method == "POST":
                        response = await client.post("/search", json=search.body)
                    else:
                        response = await client.get("/search", params=search.params)
                    error = "" if response.status_code == 200 else f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    error = type(exc).__name__
                if not error:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    errors += 1
                    error_kinds[error] = error_kinds.get(error, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return LoadResult(len(latencies), errors, elapsed, latencies, error_kinds)


LoadKey = tuple[str, str, int, int]  # mix, backend, workers, concurrency


def load_phase(
    urls: dict[str, str], searches: list[Search], seconds: float, workers: int, mix: str
) -> dict[LoadKey, LoadResult]:
    if mix == MIX_NO_CQL2:
        searches = [s for s in searches if s.kind != CQL2_KIND]
    results: dict[LoadKey, LoadResult] = {}
    for concurrency in CONCURRENCY:
        for backend, url in urls.items():
            result = asyncio.run(_load(url, searches, _methods(backend), concurrency, seconds))
            results[(mix, backend, workers, concurrency)] = result
            LOADAVG.append(os.getloadavg()[0])
            print(
                f"  load {mix}: {backend:8} workers={workers} c={concurrency:<2}: "
                f"{result.rps:7.1f} req/s, p99 {result.p99:7.1f} ms, {result.errors} errors "
                f"{result.error_kinds or ''}",
                file=sys.stderr,
            )
    return results


@dataclass
class SizeResult:
    n_items: int
    wide_fraction: tuple[float, float, float]
    times: dict[str, dict[str, list[float]]]
    load: dict[LoadKey, LoadResult]
    load_seconds: dict[str, float]
    memory: dict[str, float]
    same_ids: tuple[int, int]
    rustac_same_count: tuple[int, int]
    loadavg: list[float]  # the 1-minute load average, sampled at each step
    workers: int
    backends: tuple[str, ...] = field(default=BACKENDS)


def run_size(n_items: int, config: Config, work: Path) -> SizeResult:
    rng = random.Random(SEED + n_items)
    LOADAVG.clear()
    LOADAVG.append(os.getloadavg()[0])
    data_dir = work / f"data-{n_items}"
    started = time.perf_counter()
    n_items, bboxes = write_catalog(data_dir / "catalog", work / f"rustac-{n_items}", n_items, rng)
    print(f"wrote {n_items} items in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    searches = make_searches(rng, config.queries_per_kind)
    wide = wide_bbox_fraction(searches, bboxes)
    print(
        f"wide bbox matches {wide[0]:.1%} of the items (min {wide[1]:.1%}, max {wide[2]:.1%})",
        file=sys.stderr,
    )
    backends = BACKENDS if config.rustac else BACKENDS[:2]
    load_seconds: dict[str, float] = {}
    started = time.perf_counter()
    load_catalog_embedded(data_dir / "stac-index.sqlite", data_dir / "catalog")
    load_seconds["embedded"] = time.perf_counter() - started
    print(f"embedded index built in {load_seconds['embedded']:.1f}s", file=sys.stderr)

    times: dict[str, dict[str, list[float]]] = {}
    load: dict[LoadKey, LoadResult] = {}
    memory: dict[str, float] = {}
    same = total = rustac_same = rustac_total = 0
    rustac_differs: dict[str, str] = {}
    with TemporaryPostgres() as pg, contextlib.ExitStack() as stack:
        started = time.perf_counter()
        load_catalog_pgstac(pg.dsn, data_dir / "catalog")
        load_seconds["pgstac"] = time.perf_counter() - started
        print(f"pgstac loaded in {load_seconds['pgstac']:.1f}s", file=sys.stderr)
        assert pg.pid is not None
        urls: dict[str, str] = {}
        pids: dict[str, int] = {}
        if config.rustac:
            started = time.perf_counter()
            urls["rustac"], pids["rustac"] = stack.enter_context(
                rustac_server(work / f"rustac-{n_items}", data_dir / "rustac.log")
            )
            load_seconds["rustac"] = time.perf_counter() - started
            print(f"rustac answered after {load_seconds['rustac']:.1f}s", file=sys.stderr)
        servers = stack.enter_context(contextlib.ExitStack())
        for backend in ("embedded", "pgstac"):
            dsn = pg.dsn if backend == "pgstac" else None
            server = servers.enter_context(running_stac_server(data_dir, backend, dsn=dsn))
            urls[backend], pids[backend] = server.url, server.pid
        urls = {b: urls[b] for b in backends}
        clients = {
            b: stack.enter_context(httpx.Client(base_url=urls[b], timeout=120)) for b in backends
        }
        for search in searches[: config.warmup]:
            for backend in backends:
                for method in _methods(backend, search.kind):
                    _timed(clients[backend], search, method)
        for search in searches:
            for method in ("GET", "POST"):
                ids: dict[str, list[str]] = {}
                slot = times.setdefault(f"{method} {search.kind}", {b: [] for b in backends})
                for backend in backends:
                    if method not in _methods(backend, search.kind):
                        continue
                    elapsed, ids[backend] = _timed(clients[backend], search, method)
                    slot[backend].append(elapsed)
                same += ids["embedded"] == ids["pgstac"]
                total += 1
                if "rustac" in ids:
                    agrees = len(ids["rustac"]) == len(ids["embedded"])
                    rustac_same += agrees
                    rustac_total += 1
                    if not agrees and search.kind not in rustac_differs:
                        rustac_differs[search.kind] = (
                            f"{orjson.dumps(search.body).decode()}: embedded "
                            f"{len(ids['embedded'])} items, rustac {len(ids['rustac'])}"
                        )
        LOADAVG.append(os.getloadavg()[0])
        print(f"latency phase done: same ids on {same}/{total} searches", file=sys.stderr)
        for kind, example in rustac_differs.items():
            print(f"rustac's page size differs ({kind}), e.g. {example}", file=sys.stderr)
        load.update(
            load_phase(
                {b: urls[b] for b in ("embedded", "pgstac")},
                searches,
                config.load_seconds,
                workers=1,
                mix=MIX_ALL,
            )
        )
        load.update(load_phase(urls, searches, config.load_seconds, workers=1, mix=MIX_NO_CQL2))
        memory["embedded"] = tree_peak_rss_mb(pids["embedded"])
        memory["pgstac"] = tree_peak_rss_mb(pids["pgstac"])
        memory["postgres"] = postgres_rss_mb(pg.pid)
        if config.rustac:
            memory["rustac"] = tree_peak_rss_mb(pids["rustac"])
        servers.close()  # the STAC servers; rustac stays (one process, all its threads)
        if config.workers > 1:
            with contextlib.ExitStack() as servers_n:
                urls_n = {}
                for backend in ("embedded", "pgstac"):
                    dsn = pg.dsn if backend == "pgstac" else None
                    server = servers_n.enter_context(
                        running_stac_server(data_dir, backend, dsn=dsn, workers=config.workers)
                    )
                    urls_n[backend] = server.url
                # fresh worker processes: warm each up as the latency phase warmed the
                # 1-worker servers (several connections, so that every worker gets some)
                for url in urls_n.values():
                    asyncio.run(_load(url, searches, ("GET", "POST"), 4 * config.workers, 3.0))
                load.update(
                    load_phase(
                        urls_n, searches, config.load_seconds, workers=config.workers, mix=MIX_ALL
                    )
                )
    return SizeResult(
        n_items=n_items,
        wide_fraction=wide,
        times=times,
        load=load,
        load_seconds=load_seconds,
        memory=memory,
        same_ids=(same, total),
        rustac_same_count=(rustac_same, rustac_total),
        loadavg=[*LOADAVG, os.getloadavg()[0]],
        workers=config.workers,
        backends=backends,
    )


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------
def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b and b == b and a == a else ""


def table_rows(result: SizeResult) -> list[tuple[str, ...]]:
    rustac = "rustac" in result.backends
    header = ["", "embedded", "pgstac"] + (["rustac"] if rustac else [])
    header += ["embedded / pgstac"] + (["embedded / rustac"] if rustac else [])
    rows: list[tuple[str, ...]] = [tuple(header)]
    for key, slot in result.times.items():
        cells = [f"{key}: p50 / p95 ms"]
        p50 = {}
        for backend in result.backends:
            values = slot[backend]
            if values:
                p50[backend] = _p(values, 50)
                cells.append(f"{p50[backend]:.1f} / {_p(values, 95):.1f}")
            else:
                cells.append("—")
        cells.append(_ratio(p50["embedded"], p50["pgstac"]))
        if rustac:
            cells.append(_ratio(p50["embedded"], p50["rustac"]) if "rustac" in p50 else "")
        rows.append(tuple(cells))
    phases = sorted({(m, w) for m, _, w, _ in result.load}, key=lambda p: (p[0] != MIX_ALL, p[1]))
    for mix, workers in phases:
        for concurrency in CONCURRENCY:
            cells = [
                f"{mix}, {workers} worker{'s' if workers > 1 else ''}, c={concurrency}: "
                "req/s, p99 ms"
            ]
            rps = {}
            for backend in result.backends:
                r = result.load.get((mix, backend, workers, concurrency))
                if r is None:
                    cells.append("—")
                    continue
                rps[backend] = r.rps
                errors = f", {r.errors} errors" if r.errors else ""
                cells.append(f"{r.rps:.0f} req/s, {r.p99:.0f}{errors}")
            cells.append(_ratio(rps.get("embedded", 0), rps.get("pgstac", 0)) + " (req/s)")
            if rustac:
                ratio = _ratio(rps.get("embedded", 0), rps.get("rustac", 0))
                cells.append(ratio + " (req/s)" if ratio else "")
            rows.append(tuple(cells))
    ls = result.load_seconds
    cells = [f"load {result.n_items} items (s)", f"{ls['embedded']:.1f}", f"{ls['pgstac']:.1f}"]
    if rustac:
        cells.append(f"{ls['rustac']:.1f}")
    cells.append(_ratio(ls["embedded"], ls["pgstac"]))
    if rustac:
        cells.append(_ratio(ls["embedded"], ls["rustac"]))
    rows.append(tuple(cells))
    mem = result.memory
    pg_total = mem["pgstac"] + mem["postgres"]
    cells = [
        "peak RSS of the server, 1 worker (MB)",
        f"{mem['embedded']:.0f}",
        f"{pg_total:.0f} (API {mem['pgstac']:.0f} + PostgreSQL {mem['postgres']:.0f})",
    ]
    if rustac:
        cells.append(f"{mem['rustac']:.0f}")
    cells.append(_ratio(mem["embedded"], pg_total))
    if rustac:
        cells.append(_ratio(mem["embedded"], mem["rustac"]))
    rows.append(tuple(cells))
    return rows


def notes(result: SizeResult) -> str:
    wide = result.wide_fraction
    text = (
        f"{result.n_items} items; the wide bbox matched {wide[0]:.1%} of the items "
        f"(min {wide[1]:.1%}, max {wide[2]:.1%}). embedded and pgstac returned the same ids "
        f"on {result.same_ids[0]}/{result.same_ids[1]} searches."
    )
    if "rustac" in result.backends:
        text += (
            " rustac is asked POST only (its GET /search with bbox/collections is a 500) and"
            " no CQL2 filter (0.9.18's in-memory backend ignores a POST filter without"
            " filter-lang and matches nothing with filter-lang cql2-json); it does not sort"
            " (the first matches in load order) and returned as many items as embedded on"
            f" {result.rustac_same_count[0]}/{result.rustac_same_count[1]} searches."
        )
    text += (
        f" Machine noise: 1-minute load average {min(result.loadavg):.1f}-"
        f"{max(result.loadavg):.1f} (mean {statistics.mean(result.loadavg):.1f}, "
        f"{len(result.loadavg)} samples) on {os.cpu_count()} CPUs."
    )
    return text


def print_table(result: SizeResult) -> None:
    rows = table_rows(result)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"\n== {result.n_items} items ==")
    for n, row in enumerate(rows):
        print(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
        if n == 0:
            print("-+-".join("-" * w for w in widths))
    print(notes(result))


def markdown(result: SizeResult) -> str:
    rows = table_rows(result)
    lines = [f"**{result.n_items:,} items**", ""]
    lines.append("| " + " | ".join(rows[0]) + " |")
    lines.append("| " + " | ".join("---" for _ in rows[0]) + " |")
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    lines += ["", notes(result), ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, help="one catalogue size")
    parser.add_argument(
        "--sizes",
        default="10000,100000",
        help="comma-separated catalogue sizes (default: %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="10k items, fewer queries")
    parser.add_argument("--queries", type=int, help="searches per kind (default 60, quick 10)")
    parser.add_argument(
        "--load-seconds", type=float, help="seconds per load step (default 8, quick 2)"
    )
    parser.add_argument("--workers", type=int, default=2, help="N of the N-worker load phase")
    parser.add_argument("--no-rustac", action="store_true", help="leave rustac out")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.items:
        sizes = [args.items]
    elif args.quick:
        sizes = [10_000]
    else:
        sizes = [int(s) for s in args.sizes.split(",")]
    rustac = not args.no_rustac
    if rustac and not RUSTAC.is_file():
        print(
            f"rustac not found at {RUSTAC} (scripts/bootstrap installs it); left out",
            file=sys.stderr,
        )
        rustac = False
    config = Config(
        queries_per_kind=args.queries or (10 if args.quick else 60),
        warmup=10 if args.quick else 20,
        load_seconds=args.load_seconds or (2.0 if args.quick else 8.0),
        workers=args.workers,
        rustac=rustac,
    )
    work = Path(tempfile.mkdtemp(prefix="twinmesh-bench-stac-"))
    results = []
    try:
        for n_items in sizes:
            result = run_size(n_items, config, work)
            print_table(result)
            results.append(result)
            if args.markdown:
                args.markdown.write_text("\n".join(markdown(r) for r in results))
            # removing 100,000 item files takes minutes on a busy disk: after the report
            for path in work.iterdir():
                shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
