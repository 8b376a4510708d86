"""The gRPC twin API server: ``twinmesh.v1.TwinService`` on ``grpc.aio``.

One unary call per core capability (the request converted field by field to the
capability's inputs, the result to its response), jobs over core's job store, and the
four state calls delegated to :mod:`twinmesh.grpc.streams`. Around them: the standard
health checking service and server reflection (grpcurl needs no .proto), message size
limits, deadlines and cancellation that stop the computation, and core's errors as
status codes (:mod:`twinmesh.grpc.errors`).

The server is ``grpc.aio`` because a threaded server gives each open ``StreamState``
its own thread and starves the others; every blocking call of core (the store, the
database, a model run) goes to a worker thread, never the event loop.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health as grpc_health
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from twinmesh.core.capabilities import CAPABILITIES
from twinmesh.core.engine import Engine
from twinmesh.core.errors import InvalidParameter, TooLarge
from twinmesh.core.results import OutputKind, Result
from twinmesh.core.settings import Settings
from twinmesh.grpc import convert
from twinmesh.grpc.cache import ReadCache
from twinmesh.grpc.errors import abort, translate_errors, translate_stream_errors
from twinmesh.v1 import twin_pb2, twin_pb2_grpc

__all__ = [
    "SERVICE_NAME",
    "CAPABILITY_CALLS",
    "TwinServicer",
    "AddressInUse",
    "create_server",
    "serve_grpc",
    "serving",
]

logger = logging.getLogger("twinmesh.grpc")

SERVICE_NAME: str = twin_pb2.DESCRIPTOR.services_by_name["TwinService"].full_name

#: The call of each core capability: a new capability needs its request and response
#: messages in the proto and one line here (a contract test fails until it has both).
CAPABILITY_CALLS: dict[str, str] = {
    "Simulate": "simulate",
    "Forecast": "forecast",
    "GetWarnings": "warnings",
    "Subset": "subset",
    "Verify": "verify",
}

_T = TypeVar("_T")
type Context = grpc.aio.ServicerContext[Any, Any]


class CallCancelled(Exception):
    """Raised inside a computation at its next progress report once its call has ended
    (deadline passed, client cancelled): the work stops and its result is never built."""


def _response_type(method: str) -> type[Any]:
    descriptor = twin_pb2.DESCRIPTOR.services_by_name["TwinService"].methods_by_name[method]
    return getattr(twin_pb2, descriptor.output_type.name)  # type: ignore[no-any-return]


def _too_large(capability: str, size: int, limit: int) -> TooLarge:
    return TooLarge(
        f"the {capability} response would be {_mib(size)} and the gRPC message limit is "
        f"{_mib(limit)} (setting grpc.max_message_bytes): ask for fewer members, regions, "
        "days, variables or a smaller area, or run it as a job (SubmitJob) and read the "
        "stored result"
    )


def _mib(n: int) -> str:
    return f"{n / 1024**2:,.2f} MiB"


def _streams() -> ModuleType | None:
    """The state calls' module (imported on first use, so the unary API serves even
    where it is missing)."""
    try:
        return importlib.import_module("twinmesh.grpc.streams")
    except ModuleNotFoundError as exc:
        if exc.name != "twinmesh.grpc.streams":
            raise
        return None


async def _stream_module(context: Context, method: str) -> ModuleType:
    module = _streams()
    if module is None:
        await abort(
            context,
            grpc.StatusCode.UNIMPLEMENTED,
            f"{method} is not available on this server",
            "Unimplemented",
        )
    return module


def _serialized(work: Callable[[threading.Event], Any]) -> Callable[[threading.Event], bytes]:
    """``work`` with its answer serialized in the worker thread (what the cache keeps)."""

    def run(stop: threading.Event) -> bytes:
        return work(stop).SerializeToString()  # type: ignore[no-any-return]

    return run


class TwinServicer(twin_pb2_grpc.TwinServiceServicer):
    """``twinmesh.v1.TwinService`` over one engine (store, jobs, event log)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.max_message_bytes = engine.settings.grpc.max_message_bytes
        #: Capability computations (model runs, seconds each) get threads of their own,
        #: so they never hold up the short reads of the other calls and of the streams
        #: (asyncio's default executor).
        self.compute = ThreadPoolExecutor(
            max_workers=engine.settings.grpc.compute_threads,
            thread_name_prefix="twinmesh-compute",
        )
        #: Recent answers of the read calls, serialized (twinmesh.grpc.cache: how old
        #: they may be); those calls answer with these bytes.
        self.reads: ReadCache[bytes] = ReadCache(engine.settings.grpc.read_cache_seconds)

    def close(self) -> None:
        """Drop the computations still queued (their calls have ended)."""
        self.compute.shutdown(wait=False, cancel_futures=True)

    async def _in_thread(
        self,
        method: str,
        work: Callable[[threading.Event], _T],
        executor: ThreadPoolExecutor | None = None,
    ) -> _T:
        """Run blocking ``work(stop)`` in a worker thread (of ``executor``; asyncio's
        default one otherwise). When the call ends first (deadline, cancellation), a
        computation still queued never starts, and for a running one ``stop`` is set: it
        raises CallCancelled at its next progress report and nothing of it reaches the
        client."""
        stop = threading.Event()
        started = time.perf_counter()

        def run() -> _T:
            try:
                return work(stop)
            except CallCancelled:
                logger.info(
                    "%s stopped its work %.2fs after it started: the call had ended",
                    method,
                    time.perf_counter() - started,
                )
                raise

        try:
            return await asyncio.get_running_loop().run_in_executor(executor, run)
        except asyncio.CancelledError:
            stop.set()
            logger.info(
                "%s ended by the client or its deadline after %.2fs; its work stops",
                method,
                time.perf_counter() - started,
            )
            raise

    # -- twins --------------------------------------------------------------------------
    @translate_errors
    async def ListTwins(
        self, request: twin_pb2.ListTwinsRequest, context: Context
    ) -> twin_pb2.ListTwinsResponse:
        def work(_stop: threading.Event) -> twin_pb2.ListTwinsResponse:
            store = self.engine.store
            return twin_pb2.ListTwinsResponse(
                twins=[convert.twin_summary(store.read_twin(t)) for t in store.twin_ids()]
            )

        return await self.reads.read(  # type: ignore[return-value]  # the serialized answer
            ("twins",), lambda: self._in_thread("ListTwins", _serialized(work))
        )

    @translate_errors
    async def GetTwin(
        self, request: twin_pb2.GetTwinRequest, context: Context
    ) -> twin_pb2.GetTwinResponse:
        _require(request.twin_id, "twin_id", "the id of a twin (see ListTwins)")

        def work(_stop: threading.Event) -> twin_pb2.GetTwinResponse:
            return twin_pb2.GetTwinResponse(
                twin=convert.twin_message(self.engine.twin(request.twin_id))
            )

        return await self.reads.read(  # type: ignore[return-value]  # the serialized answer
            ("twin", request.twin_id), lambda: self._in_thread("GetTwin", _serialized(work))
        )

    # -- capabilities -------------------------------------------------------------------
    async def _capability(
        self, method: str, capability: str, request: Any, response_type: type[Any]
    ) -> Any:
        twin_id, inputs = convert.capability_inputs(request, CAPABILITIES[capability])
        limit = self.max_message_bytes

        def work(stop: threading.Event) -> Any:
            def progress(_fraction: float, _message: str) -> None:
                if stop.is_set():
                    raise CallCancelled

            result: Result = self.engine.run(twin_id, capability, inputs, progress=progress)
            if stop.is_set():
                raise CallCancelled
            if result.kind is OutputKind.COVERAGE:
                lower_bound = convert.coverage_size_bytes(result.data)
                if lower_bound > limit:
                    raise _too_large(capability, lower_bound, limit)
            response = convert.result_response(result, response_type)
            size = response.ByteSize()
            if size > limit:
                raise _too_large(capability, size, limit)
            return response

        return await self._in_thread(method, work, self.compute)

    # -- jobs ---------------------------------------------------------------------------
    @translate_errors
    async def SubmitJob(
        self, request: twin_pb2.SubmitJobRequest, context: Context
    ) -> twin_pb2.SubmitJobResponse:
        _require(request.twin_id, "twin_id", "the id of a twin (see ListTwins)")
        _require(request.capability, "capability", f"one of {', '.join(CAPABILITIES)}")
        inputs = convert.struct_to_dict(request.inputs)

        def work(_stop: threading.Event) -> twin_pb2.SubmitJobResponse:
            job = self.engine.submit(request.twin_id, request.capability, inputs)
            return twin_pb2.SubmitJobResponse(job=convert.job_message(job))

        response = await self._in_thread("SubmitJob", work)
        self.reads.put(
            ("job", response.job.id),
            twin_pb2.GetJobResponse(job=response.job).SerializeToString(),
        )
        return response

    @translate_errors
    async def GetJob(
        self, request: twin_pb2.GetJobRequest, context: Context
    ) -> twin_pb2.GetJobResponse:
        _require(request.job_id, "job_id", "the id SubmitJob returned")

        def work(_stop: threading.Event) -> twin_pb2.GetJobResponse:
            return twin_pb2.GetJobResponse(
                job=convert.job_message(self.engine.jobs.get(request.job_id))
            )

        return await self.reads.read(  # type: ignore[return-value]  # the serialized answer
            ("job", request.job_id), lambda: self._in_thread("GetJob", _serialized(work))
        )

    @translate_errors
    async def CancelJob(
        self, request: twin_pb2.CancelJobRequest, context: Context
    ) -> twin_pb2.CancelJobResponse:
        _require(request.job_id, "job_id", "the id SubmitJob returned")

        def work(_stop: threading.Event) -> twin_pb2.CancelJobResponse:
            return twin_pb2.CancelJobResponse(
                job=convert.job_message(self.engine.jobs.cancel(request.job_id))
            )

        response = await self._in_thread("CancelJob", work)
        self.reads.put(
            ("job", response.job.id),
            twin_pb2.GetJobResponse(job=response.job).SerializeToString(),
        )
        return response

    # -- state (twinmesh.grpc.streams) ----------------------------------------------------
    @translate_stream_errors
    async def StreamState(
        self, request: twin_pb2.StreamStateRequest, context: Context
    ) -> AsyncIterator[twin_pb2.StreamStateResponse]:
        streams = await _stream_module(context, "StreamState")
        async for message in streams.stream_state(self.engine, request, context):
            yield message

    @translate_errors
    async def IngestObservations(
        self, request_iterator: AsyncIterator[twin_pb2.IngestObservationsRequest], context: Context
    ) -> twin_pb2.IngestObservationsResponse:
        streams = await _stream_module(context, "IngestObservations")
        return await streams.ingest_observations(  # type: ignore[no-any-return]
            self.engine, request_iterator, context
        )

    @translate_stream_errors
    async def ReplayState(
        self, request: twin_pb2.ReplayStateRequest, context: Context
    ) -> AsyncIterator[twin_pb2.ReplayStateResponse]:
        streams = await _stream_module(context, "ReplayState")
        async for message in streams.replay_state(self.engine, request, context):
            yield message

    @translate_stream_errors
    async def ExportState(
        self, request: twin_pb2.ExportStateRequest, context: Context
    ) -> AsyncIterator[twin_pb2.ExportStateResponse]:
        streams = await _stream_module(context, "ExportState")
        async for message in streams.export_state(self.engine, request, context):
            yield message


def _capability_method(method: str, capability: str) -> Callable[..., Any]:
    response_type = _response_type(method)

    async def call(self: TwinServicer, request: Any, context: Context) -> Any:
        return await self._capability(method, capability, request, response_type)

    call.__name__ = call.__qualname__ = method
    call.__doc__ = f"The {capability!r} capability: {CAPABILITIES[capability].description}"
    return translate_errors(call)


for _method, _capability_name in CAPABILITY_CALLS.items():
    setattr(TwinServicer, _method, _capability_method(_method, _capability_name))


def _require(value: str, name: str, what: str) -> None:
    if not value:
        raise InvalidParameter(f"{name} is required: {what}")


class _Health(grpc_health.aio.HealthServicer):  # type: ignore[misc]
    """Standard health checking: the server ("") and TwinService serve from the start."""

    def __init__(self, services: list[str]) -> None:
        super().__init__()
        for service in services:
            self._server_status[service] = health_pb2.HealthCheckResponse.SERVING


def _server_options(settings: Settings) -> list[tuple[str, Any]]:
    limit = settings.grpc.max_message_bytes
    return [
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
        # gRPC sets SO_REUSEPORT by default: a second server would share the port with
        # the first instead of failing to start.
        ("grpc.so_reuseport", 0),
        # Find clients of long streams that went away without closing.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
    ]


class AddressInUse(OSError):
    """The server's address is taken (another server, another ``twinmesh up``)."""


#: Read calls whose answers the read cache keeps already serialized.
_CACHED_READS = ("ListTwins", "GetTwin", "GetJob")


class _Handlers:
    """Stands in for a server to take the generated registration's method handlers."""

    handlers: dict[str, grpc.RpcMethodHandler]

    def add_generic_rpc_handlers(self, _handlers: Any) -> None:
        pass

    def add_registered_method_handlers(
        self, _service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.handlers = handlers


def _serialized_or(serialize: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    def out(message: Any) -> bytes:
        return message if isinstance(message, bytes) else serialize(message)

    return out


def _add_servicer(servicer: TwinServicer, server: grpc.aio.Server) -> None:
    """The generated registration, except that the cached read calls may answer with
    the bytes the read cache keeps (serialized once per cache entry, not per call)."""
    taken = _Handlers()
    twin_pb2_grpc.add_TwinServiceServicer_to_server(servicer, taken)
    handlers = dict(taken.handlers)
    for name in _CACHED_READS:
        handler: Any = handlers[name]
        handlers[name] = handler._replace(
            response_serializer=_serialized_or(handler.response_serializer)
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


@dataclass(frozen=True)
class _Parts:
    server: grpc.aio.Server
    servicer: TwinServicer
    health: _Health
    engine: Engine


def _build(settings: Settings, engine: Engine | None) -> _Parts:
    engine = engine or Engine(settings)
    server = grpc.aio.server(options=_server_options(settings))
    servicer = TwinServicer(engine)
    _add_servicer(servicer, server)
    health = _Health(["", SERVICE_NAME])
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    address = f"{settings.grpc.host}:{settings.grpc.port}"
    try:
        server.add_insecure_port(address)
    except RuntimeError as exc:
        servicer.close()
        raise AddressInUse(
            f"cannot listen on {address} (in use by another process?): stop that process "
            "or set TWINMESH_GRPC__PORT to a free port"
        ) from exc
    return _Parts(server, servicer, health, engine)


def create_server(settings: Settings, *, engine: Engine | None = None) -> grpc.aio.Server:
    """The gRPC API bound to ``settings.grpc.host:port``, not started (``await
    server.start()``). Call it inside the event loop that will run it."""
    return _build(settings, engine).server


async def _serve(settings: Settings) -> None:
    parts = _build(settings, None)
    streams = _streams()
    if streams is not None:
        # The state streams' first reads (the Zarr stack's imports) hold the GIL long
        # enough to stall live streams: done before the server answers health checks.
        await streams.prepare(parts.engine)
    await parts.server.start()
    logger.info(
        "twinmesh gRPC API (%s, health, reflection) on %s:%s",
        SERVICE_NAME,
        settings.grpc.host,
        settings.grpc.port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await parts.health.enter_graceful_shutdown()
        await parts.server.stop(settings.grpc.shutdown_grace_seconds)
        parts.servicer.close()
        if streams is not None:  # its follower and warning-trigger threads
            await asyncio.to_thread(streams.close_hub, parts.engine)
        await asyncio.to_thread(parts.engine.close)


def serve_grpc(settings: Settings) -> None:
    """Run the gRPC API until SIGINT or SIGTERM, then let calls in flight finish (for
    ``grpc.shutdown_grace_seconds``)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(_serve(settings))
    except AddressInUse as exc:
        logger.error("%s", exc)
        raise SystemExit(1) from None


def serving(address: str, *, timeout_s: float = 2.0, service: str = "") -> bool:
    """Whether the server at ``address`` (``host:port``) answers the standard health check
    with SERVING (what ``twinmesh up`` and the tests wait for)."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


if __name__ == "__main__":
    from twinmesh.core.settings import load_settings

    serve_grpc(load_settings())
