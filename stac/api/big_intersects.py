"""Big ``intersects`` geometries, parsed in a process of their own.

A POST /search body can hold a polygon of 100 000 vertices (2.5 MB). Parsing it takes
~200 ms of CPU: ``orjson.loads`` holds the GIL ~90 ms at once and shapely's polygon
construction takes it in turns. In a thread of the server that still stalls every
other client (a ``GET /`` waited up to 270 ms); in a child process it costs the server
only the pipe copy and ``shapely.from_wkb`` (~5 ms).

The child (``python -m twinmesh.stac.api.big_intersects``) imports only orjson and
shapely, starts on the first big body, serves one body at a time over its stdin and
stdout, and exits when the server closes its stdin or exits (it never outlives it).

This module holds the one GeoJSON geometry check of both backends
(:func:`parse_geometry`), so the child and the server answer a bad geometry with the
same message.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import struct
import subprocess
import sys
import threading
from typing import IO, Any

import orjson
import shapely
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

logger = logging.getLogger(__name__)

__all__ = ["BigIntersects", "GeometryError", "IntersectsParser", "parse_geometry", "stand_in"]

_LENGTH = struct.Struct("<Q")
_NOT_A_SEARCH, _PARSED, _INVALID = b"n", b"p", b"e"


class GeometryError(ValueError):
    """The ``intersects`` value is not a GeoJSON geometry a search can use (the message
    says why, for the client)."""


def parse_geometry(value: Any) -> BaseGeometry:
    """A GeoJSON geometry (dict, Feature or JSON text) as a valid shapely geometry."""
    if isinstance(value, BaseGeometry):
        return value
    if isinstance(value, str | bytes):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise GeometryError("intersects is not valid JSON") from None
    if hasattr(value, "model_dump"):
        value = value.model_dump(exclude_none=True)
    if isinstance(value, dict) and value.get("type") == "Feature":
        value = value.get("geometry")
    if not isinstance(value, dict) or "type" not in value:
        raise GeometryError("intersects must be a GeoJSON geometry object")
    try:
        geom = shape(value)
    except Exception as exc:  # shapely raises several types for bad GeoJSON
        raise GeometryError(f"intersects is not a valid GeoJSON geometry: {exc}") from None
    if geom.is_empty:
        raise GeometryError("intersects is an empty geometry")
    minx, miny, maxx, maxy = geom.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise GeometryError("intersects lies outside (-180, -90, 180, 90)")
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    return geom


def stand_in(body: bytes) -> tuple[bytes, bytes, bytes] | None:
    """For a POST /search body with an ``intersects`` object: the body with the
    geometry's bounding box in its place, the geometry as WKB, and its GeoJSON as sent
    (JSON bytes). None for any other body (the app answers it itself).

    Raises :class:`GeometryError` for a geometry no search can use.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # the app answers malformed JSON itself
    if not isinstance(data, dict) or not isinstance(data.get("intersects"), dict):
        return None
    raw = data["intersects"]
    geometry = parse_geometry(raw)
    data["intersects"] = mapping(box(*geometry.bounds))
    return orjson.dumps(data), shapely.to_wkb(geometry), orjson.dumps(raw)


class BigIntersects:
    """A parsed big ``intersects``: the geometry and its GeoJSON as sent (JSON bytes,
    for pgstac; ``orjson.Fragment`` puts them into a JSON document unparsed)."""

    __slots__ = ("geometry", "geojson")

    def __init__(self, geometry: BaseGeometry, geojson: bytes) -> None:
        self.geometry = geometry
        self.geojson = geojson


class IntersectsParser:
    """The server's side: one child process, started on first use, one body at a time.

    :meth:`parse` is a coroutine; the exchange itself runs in a worker thread (pipe
    reads and writes release the GIL), so a request cancelled meanwhile never leaves
    the pipe half-read. A child that dies is started anew for the next body, and the
    body it died on is an error (a 500 for the client, a line in the log).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    async def parse(self, body: bytes) -> tuple[bytes, BigIntersects] | None:
        """The stand-in body and the parsed geometry, or None when ``body`` is not a
        search with an ``intersects`` object. Raises :class:`GeometryError`."""
        return await asyncio.to_thread(self._exchange, body)

    def _exchange(self, body: bytes) -> tuple[bytes, BigIntersects] | None:
        with self._lock:
            process = self._running()
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write(_LENGTH.pack(len(body)))
                process.stdin.write(body)
                process.stdin.flush()
                tag = _read_exactly(process.stdout, 1)
                if tag == _NOT_A_SEARCH:
                    return None
                if tag == _INVALID:
                    raise GeometryError(_read_frame(process.stdout).decode())
                if tag != _PARSED:
                    raise EOFError(f"unexpected reply {tag!r}")
                replaced, wkb, geojson = (_read_frame(process.stdout) for _ in range(3))
            except (OSError, EOFError) as exc:
                self._process = None
                process.kill()
                code = process.wait()
                raise RuntimeError(
                    f"the intersects parser process ended (exit code {code}): {exc}"
                ) from None
        return replaced, BigIntersects(shapely.from_wkb(wkb), geojson)

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                close_fds=True,
            )
            logger.info("started the intersects parser process %d", self._process.pid)
        return self._process

    def close(self) -> None:
        """Stop the child (closing its stdin ends it); waits at most 5 s, then kills."""
        with self._lock:
            process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("the pipe closed")
    return data


def _read_frame(stream: IO[bytes]) -> bytes:
    (size,) = _LENGTH.unpack(_read_exactly(stream, _LENGTH.size))
    return _read_exactly(stream, size)


def _frame(data: bytes) -> bytes:
    return _LENGTH.pack(len(data)) + data


def main() -> None:
    """The child: read length-prefixed bodies from stdin, answer each on stdout, until
    stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops it; Ctrl-C is for the server
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = stdin.read(_LENGTH.size)
        if len(header) != _LENGTH.size:
            return
        (size,) = _LENGTH.unpack(header)
        body = _read_exactly(stdin, size)
        try:
            parsed = stand_in(body)
        except GeometryError as exc:
            stdout.write(_INVALID + _frame(str(exc).encode()))
        else:
            if parsed is None:
                stdout.write(_NOT_A_SEARCH)
            else:
                stdout.write(_PARSED + b"".join(_frame(part) for part in parsed))
        stdout.flush()


if __name__ == "__main__":
    main()
