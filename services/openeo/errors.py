"""openEO error objects (``{id, code, message}``) and how other errors become them."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from twinmesh.core.errors import TwinmeshError

__all__ = ["OpenEOError", "error_response", "from_exception"]


class OpenEOError(Exception):
    """An error with the status and code the openEO API defines for it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str, request_id: str) -> Response:
    """The openEO error object (``id`` is the request id the log names too)."""
    body: dict[str, Any] = {"id": request_id, "code": code, "message": message, "links": []}
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _process_library_exception(exc: BaseException) -> bool:
    """openeo-processes-dask's exceptions name a client's mistake with openEO's process
    error names (its ``exceptions.py``)."""
    from openeo_processes_dask.process_implementations.exceptions import OpenEOException

    return isinstance(exc, OpenEOException)


def from_exception(exc: BaseException) -> OpenEOError | None:
    """The openEO error of a known exception; None for an unexpected one (a 500)."""
    if isinstance(exc, OpenEOError):
        return exc
    if isinstance(exc, TwinmeshError):
        code = {"TooLarge": "ProcessGraphComplexity", "UnknownDataset": "CollectionNotFound"}.get(
            exc.code, exc.code
        )
        status = 400 if exc.status == 413 else int(exc.status)
        return OpenEOError(status if status < 500 else 400, code, exc.message)
    if _process_library_exception(exc):
        name = type(exc).__name__
        return OpenEOError(400, name if name != "OpenEOException" else "ProcessError", str(exc))
    return None
