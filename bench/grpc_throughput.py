"""Benchmark: the gRPC twin API against a bare grpc.aio echo server, and the live state
stream at 30 Hz to 100 subscribers.

Builds the Fulda demo twin (few calibration runs) in a temporary data dir, starts the
real server (``python -m twinmesh.grpc.server``, as ``twinmesh serve grpc`` runs it) and,
as the baseline in the same run, a bare ``grpc.aio`` server in its own process that
answers the same calls with the same response bytes (captured from the real server)
without doing anything. Measures, from a ``grpc.aio`` client in this process:

- unary calls/s and p50/p99 latency of ``GetJob`` (a job row read from SQLite) and
  ``GetTwin`` (the twin document, 15 kB) at concurrency 1 and 16 (one channel), each
  against the echo of its own response (target: >= 0.8x the echo at c=16); the best of
  two alternating runs of each, as other load on the machine hits both sides alike.
  The server runs with its default read cache (``grpc.read_cache_seconds`` = 0.5: an
  answer may be that old); a second server with the cache off shows what each call
  costs when every call reads the store (c=16);
- ``StreamState`` at 30 Hz to 100 concurrent subscribers for 10 s: frames dropped
  (frames whose tick passed in the window but never arrived; target 0) and lag p99
  (arrival minus the frame's tick ``first sent + (n - 1) / 30``: the server's scheduling
  delay plus transport; target <= 15 ms), and the transport part alone (arrival minus
  the frame's ``sent``). Observations are ingested during the window (a batch every
  0.5 s) so frames carry events, not only heartbeats.

Run: ``.venv/bin/python bench/grpc_throughput.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Only grpc at module level: the echo server runs this file and must stay bare.
from twinmesh.v1 import twin_pb2, twin_pb2_grpc  # noqa: E402

UNARY_SECONDS = 3.0
ROUNDS = 2
WARM_SECONDS = 0.5
CONCURRENCY = (1, 16)
SUBSCRIBERS = 100
RATE_HZ = 30.0
STREAM_SECONDS = 10.0
SERVICE = "/twinmesh.v1.TwinService/"


# -- the baseline: a bare grpc.aio server answering canned bytes --------------------------
async def _echo_server(port: int, responses: dict[str, bytes]) -> None:
    def handler(body: bytes) -> grpc.RpcMethodHandler:
        async def answer(_request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
            return body

        return grpc.unary_unary_rpc_method_handler(answer)

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "twinmesh.v1.TwinService", {m: handler(b) for m, b in responses.items()}
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def peak_rss_mb(pid: int) -> float:
    """A running process's peak resident memory (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def echo_server(responses: dict[str, bytes], folder: Path) -> Iterator[tuple[str, int]]:
    from tests.helpers.processes import stop_process
    from tests.helpers.stac_server import free_port

    port = free_port()
    canned = folder / "echo.json"
    canned.write_text(json.dumps({m: b.hex() for m, b in responses.items()}))
    proc = subprocess.Popen(
        [sys.executable, __file__, "--echo", str(port), str(canned)],
        stdin=subprocess.DEVNULL,
    )
    address = f"127.0.0.1:{port}"
    try:
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        yield address, proc.pid
    finally:
        stop_process(proc)


# -- unary -----------------------------------------------------------------------------------
async def unary(
    address: str, method: str, request: bytes, response_type: type, concurrency: int
) -> dict[str, float]:
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(
            SERVICE + method,
            request_serializer=lambda b: b,
            response_deserializer=response_type.FromString,
        )
        latencies: list[float] = []

        async def loop(until: float, record: bool) -> None:
            while (started := time.perf_counter()) < until:
                await call(request)
                if record:
                    latencies.append(time.perf_counter() - started)

        warm = time.perf_counter() + WARM_SECONDS
        await asyncio.gather(*(loop(warm, False) for _ in range(concurrency)))
        began = time.perf_counter()
        until = began + UNARY_SECONDS
        await asyncio.gather(*(loop(until, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    q = statistics.quantiles(latencies, n=100)
    return {
        "calls_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * q[98],
    }


def _best(runs: list[dict[str, float]]) -> dict[str, float]:
    return max(runs, key=lambda r: r["calls_per_s"])


# -- the live stream ----------------------------------------------------------------------------
async def stream(address: str) -> dict[str, float]:
    period_ns = int(1e9 / RATE_HZ)
    received: list[list[tuple[int, int, int, int]]] = [[] for _ in range(SUBSCRIBERS)]
    started = [asyncio.Event() for _ in range(SUBSCRIBERS)]

    async def subscribe(stub: twin_pb2_grpc.TwinServiceStub, k: int) -> None:
        call = stub.StreamState(twin_pb2.StreamStateRequest(twin_id="fulda", rate_hz=RATE_HZ))
        with contextlib.suppress(asyncio.CancelledError):
            async for response in call:
                arrived = time.time_ns()
                f = response.frame
                received[k].append((f.frame, f.sent.ToNanoseconds(), arrived, len(f.events)))
                started[k].set()

    async def ingest(stub: twin_pb2_grpc.TwinServiceStub, until: float) -> int:
        hour = 0
        while time.monotonic() < until:
            t0 = datetime(1988, 6, 1, tzinfo=UTC) + timedelta(hours=hour)
            batch = []
            for i in range(10):
                ts = twin_pb2.Observation().time
                ts.FromDatetime(t0 + timedelta(minutes=i))
                batch.append(
                    twin_pb2.IngestObservationsRequest(
                        observation=twin_pb2.Observation(
                            twin_id="fulda",
                            variable="discharge_m3s",
                            location_id="grebenau",
                            time=ts,
                            value=20.0,
                            units="m3 s-1",
                        )
                    )
                )
            await stub.IngestObservations(iter(batch))
            hour += 1
            await asyncio.sleep(0.5)
        return hour * 10

    async with grpc.aio.insecure_channel(address) as channel:
        stub = twin_pb2_grpc.TwinServiceStub(channel)
        tasks = [asyncio.create_task(subscribe(stub, k)) for k in range(SUBSCRIBERS)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 60)
        await asyncio.sleep(1.0)  # every stream in its stride
        window_start = time.time_ns()
        ingested = await ingest(stub, time.monotonic() + STREAM_SECONDS)
        window_end = time.time_ns()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    lags, transport = [], []
    expected = got = events = 0
    last_due = window_end - 100_000_000  # a frame due in the last 100 ms may still travel
    for frames in received:
        first_sent = frames[0][1]
        in_window = {}
        for n, sent, arrived, k in frames:
            due = first_sent + (n - 1) * period_ns
            if window_start <= due <= last_due:
                in_window[n] = arrived - due
                transport.append(arrived - sent)
                events += k
        n_first = -(-(window_start - first_sent) // period_ns) + 1
        n_last = (last_due - first_sent) // period_ns + 1
        expected += n_last - n_first + 1
        got += len(in_window)
        lags.extend(in_window.values())
    q_lag = statistics.quantiles(lags, n=100)
    q_transport = statistics.quantiles(transport, n=100)
    return {
        "expected": expected,
        "dropped": expected - got,
        "lag_p50_ms": statistics.median(lags) / 1e6,
        "lag_p99_ms": q_lag[98] / 1e6,
        "transport_p99_ms": q_transport[98] / 1e6,
        "events": events,
        "ingested": ingested,
    }


# -- main -------------------------------------------------------------------------------------
def main() -> None:
    from tests.helpers.grpc_server import running_grpc_server
    from twinmesh.core.demo import FULDA
    from twinmesh.core.engine import Engine
    from twinmesh.core.settings import Settings

    with tempfile.TemporaryDirectory(prefix="twinmesh-bench-grpc-") as tmp:
        data = Path(tmp)
        settings = Settings(data_dir=data, database_url=f"sqlite:///{data / 'twinmesh.sqlite'}")
        print("building the Fulda demo twin (200 calibration runs)...", flush=True)
        engine = Engine(settings)
        FULDA.build_into(engine.store, seed=settings.demo_seed, repetitions=200)
        job = engine.submit("fulda", "simulate", {"start": "1986-06-01", "end": "1986-06-30"})
        engine.close()
        calls = {
            "GetJob": (twin_pb2.GetJobRequest(job_id=job.id), twin_pb2.GetJobResponse),
            "GetTwin": (twin_pb2.GetTwinRequest(twin_id="fulda"), twin_pb2.GetTwinResponse),
        }
        rows = []
        uncached = settings.model_copy(
            update={"grpc": settings.grpc.model_copy(update={"read_cache_seconds": 0.0})}
        )
        with (
            running_grpc_server(settings) as server,
            running_grpc_server(uncached) as server_off,
        ):
            with grpc.insecure_channel(server.address) as channel:
                canned = {
                    m: channel.unary_unary(SERVICE + m)(req.SerializeToString(), timeout=30)
                    for m, (req, _) in calls.items()
                }
            with echo_server(canned, data) as (echo, echo_pid):
                for method, (req, response_type) in calls.items():
                    body = req.SerializeToString()
                    cases = [(server.address, "0.5 s", c) for c in CONCURRENCY]
                    cases.append((server_off.address, "off", CONCURRENCY[-1]))
                    for address, cache, c in cases:
                        # Alternating rounds, the best of each: other load on the machine
                        # hits both sides alike.
                        bases, reals = [], []
                        for _ in range(ROUNDS):
                            bases.append(asyncio.run(unary(echo, method, body, response_type, c)))
                            reals.append(
                                asyncio.run(unary(address, method, body, response_type, c))
                            )
                        rows.append(
                            (method, cache, len(canned[method]), c, _best(reals), _best(bases))
                        )
                echo_mb = peak_rss_mb(echo_pid)
            print(f"StreamState: {SUBSCRIBERS} subscribers at {RATE_HZ:g} Hz...", flush=True)
            live = asyncio.run(stream(server.address))
            server_mb = peak_rss_mb(server.pid)

    client_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(
        "gRPC twin API vs a bare grpc.aio echo server (same response bytes), "
        f"best of {ROUNDS} alternating runs of {UNARY_SECONDS:g} s, one grpc.aio client channel"
    )
    print(
        f"{'call':<8} {'cache':>6} {'bytes':>6} {'c':>3} {'calls/s':>9} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'echo calls/s':>13} {'echo p50':>9} {'echo p99':>9} {'ratio':>6}"
    )
    for method, cache, size, c, real, base in rows:
        print(
            f"{method:<8} {cache:>6} {size:>6} {c:>3} {real['calls_per_s']:>9.0f} "
            f"{real['p50_ms']:>7.2f} {real['p99_ms']:>7.2f} {base['calls_per_s']:>13.0f} "
            f"{base['p50_ms']:>9.2f} {base['p99_ms']:>9.2f} "
            f"{real['calls_per_s'] / base['calls_per_s']:>6.2f}"
        )
    print()
    print(
        f"StreamState: {SUBSCRIBERS} subscribers x {RATE_HZ:g} Hz for {STREAM_SECONDS:g} s, "
        f"{live['ingested']} observations ingested meanwhile"
    )
    print(
        f"{'frames due':>10} {'dropped':>8} {'lag p50 ms':>11} {'lag p99 ms':>11} "
        f"{'transport p99 ms':>17} {'events delivered':>17}"
    )
    print(
        f"{live['expected']:>10.0f} {live['dropped']:>8.0f} {live['lag_p50_ms']:>11.2f} "
        f"{live['lag_p99_ms']:>11.2f} {live['transport_p99_ms']:>17.2f} {live['events']:>17.0f}"
    )
    print(
        f"peak RSS: gRPC server {server_mb:.0f} MB, echo server {echo_mb:.0f} MB, "
        f"benchmark client (with the demo build) {client_mb:.0f} MB"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--echo", nargs=2, metavar=("PORT", "CANNED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        port, canned = args.echo
        responses = {m: bytes.fromhex(h) for m, h in json.loads(Path(canned).read_text()).items()}
        asyncio.run(_echo_server(int(port), responses))
    else:
        main()
