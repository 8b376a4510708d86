"""Core errors as gRPC status codes, with core's message and a ``google.rpc.ErrorInfo``
detail naming core's error code.

A client's mistake is never UNKNOWN or INTERNAL: a bad input is INVALID_ARGUMENT, an
unknown twin, job or region NOT_FOUND, a result over a size limit RESOURCE_EXHAUSTED,
a job without a result yet FAILED_PRECONDITION, a conflicting observation
ALREADY_EXISTS. Anything else is INTERNAL saying only "internal error (ref …)"; the log
has the reference and one traceback.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from twinmesh.core.errors import TwinmeshError

__all__ = [
    "ERROR_DOMAIN",
    "status_code_for",
    "abort",
    "abort_for",
    "translate_errors",
    "translate_stream_errors",
]

logger = logging.getLogger("twinmesh.grpc")

#: ``ErrorInfo.domain`` of every error this API sends (its ``reason`` is core's code).
ERROR_DOMAIN = "twinmesh.v1"

#: Core error codes whose HTTP-like status alone does not say which gRPC code fits.
_BY_CODE: dict[str, grpc.StatusCode] = {
    "JobNotFinished": grpc.StatusCode.FAILED_PRECONDITION,
    "ObservationConflict": grpc.StatusCode.ALREADY_EXISTS,
    "NothingToRollBack": grpc.StatusCode.FAILED_PRECONDITION,
    # The store has no twins yet: an operator's step (`twinmesh demo init`) is missing.
    "DataNotReady": grpc.StatusCode.FAILED_PRECONDITION,
}

_BY_STATUS: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


def status_code_for(exc: TwinmeshError) -> grpc.StatusCode:
    """The gRPC code of a core error (INTERNAL for one that is not the client's doing)."""
    for cls in type(exc).__mro__:
        code = getattr(cls, "code", None)
        if isinstance(code, str) and code in _BY_CODE:
            return _BY_CODE[code]
    if exc.status in _BY_STATUS:
        return _BY_STATUS[exc.status]
    return grpc.StatusCode.INTERNAL


def _rich_status(
    code: grpc.StatusCode, message: str, reason: str, metadata: dict[str, str] | None = None
) -> grpc.Status:
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata or {})
    )
    return rpc_status.to_status(
        status_pb2.Status(code=code.value[0], message=message, details=[detail])
    )


async def abort(
    context: grpc.aio.ServicerContext[Any, Any],
    code: grpc.StatusCode,
    message: str,
    reason: str,
    metadata: dict[str, str] | None = None,
) -> NoReturn:
    """End the call with ``code`` and ``message``; ``reason`` goes to the ErrorInfo detail."""
    status = _rich_status(code, message, reason, metadata)
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("context.abort returned")  # pragma: no cover


async def abort_for(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> NoReturn:
    """End the call with the status ``exc`` deserves.

    A core error keeps its message (and its code as the ErrorInfo reason); any other
    exception is INTERNAL with a reference that the log repeats next to the traceback.
    """
    if isinstance(exc, TwinmeshError):
        code = status_code_for(exc)
        if code is not grpc.StatusCode.INTERNAL:
            await abort(context, code, exc.message, exc.code)
    ref = secrets.token_hex(6)
    logger.error("internal error (ref %s)", ref, exc_info=exc)
    await abort(
        context, grpc.StatusCode.INTERNAL, f"internal error (ref {ref})", "Internal", {"ref": ref}
    )


def translate_errors[H: Callable[..., Awaitable[Any]]](method: H) -> H:
    """Wrap a unary (or client-streaming) handler so every exception becomes a status."""

    @functools.wraps(method)
    async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort_for(context, exc)

    return handler  # type: ignore[return-value]


def translate_stream_errors(
    method: Callable[..., AsyncIterator[Any]],
) -> Callable[..., AsyncIterator[Any]]:
    """The same for a server-streaming handler (an async generator)."""

    @functools.wraps(method)
    async def handler(
        self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            async for message in method(self, request, context):
                yield message
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort_for(context, exc)

    return handler
