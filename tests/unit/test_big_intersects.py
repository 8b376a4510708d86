"""The child process that parses big ``intersects`` geometries for the STAC API.

Real child processes throughout: the answers equal an in-process parse, a bad geometry
is the in-process message, a child that dies is replaced, and a child never outlives
the server that started it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import orjson
import pytest
import shapely
from shapely.geometry import box, shape

from tests.helpers.processes import process_running
from twinmesh.stac.api.big_intersects import (
    GeometryError,
    IntersectsParser,
    parse_geometry,
    stand_in,
)

POLYGON = {
    "type": "Polygon",
    "coordinates": [[[5.0, 45.0], [11.0, 45.5], [10.0, 48.0], [6.0, 47.5], [5.0, 45.0]]],
}


@pytest.fixture
def parser() -> IntersectsParser:
    parser = IntersectsParser()
    yield parser
    parser.close()


def test_the_child_answers_what_an_in_process_parse_answers(parser: IntersectsParser) -> None:
    body = orjson.dumps({"intersects": POLYGON, "limit": 3, "collections": ["a"]})
    replaced, parsed = asyncio.run(parser.parse(body))
    expected_body, expected_wkb, expected_geojson = stand_in(body)
    assert replaced == expected_body
    stand_in_body = orjson.loads(replaced)
    assert stand_in_body.pop("intersects") is not None
    assert stand_in_body == {"limit": 3, "collections": ["a"]}
    assert shapely.equals_exact(parsed.geometry, shape(POLYGON), 0)
    assert parsed.geometry.wkb == shapely.from_wkb(expected_wkb).wkb
    assert orjson.loads(parsed.geojson) == POLYGON == orjson.loads(expected_geojson)
    # The app sees the geometry's bounding box in its place.
    assert shape(orjson.loads(replaced)["intersects"]).equals(box(5.0, 45.0, 11.0, 48.0))


def test_other_bodies_are_left_to_the_app(parser: IntersectsParser) -> None:
    for body in (b"not json", b"[]", orjson.dumps({"ids": ["x"]}), orjson.dumps({"intersects": 5})):
        assert asyncio.run(parser.parse(body)) is None


@pytest.mark.parametrize(
    "geometry",
    [
        {"type": "Polygon", "coordinates": [[[0, 95], [1, 95], [1, 96], [0, 95]]]},
        {"type": "Polygon", "coordinates": "x"},
        {"type": "Polygon", "coordinates": []},
        {"coordinates": [0, 0]},
    ],
    ids=["outside", "not-coordinates", "empty", "no-type"],
)
def test_a_bad_geometry_has_the_in_process_message(
    parser: IntersectsParser, geometry: dict
) -> None:
    with pytest.raises(GeometryError) as in_process:
        parse_geometry(geometry)
    with pytest.raises(GeometryError) as in_child:
        asyncio.run(parser.parse(orjson.dumps({"intersects": geometry})))
    assert str(in_child.value) == str(in_process.value)
    # The child is still there for the next body.
    assert asyncio.run(parser.parse(orjson.dumps({"intersects": POLYGON}))) is not None


def test_a_child_that_died_is_replaced(parser: IntersectsParser) -> None:
    body = orjson.dumps({"intersects": POLYGON})
    assert asyncio.run(parser.parse(body)) is not None
    first = parser._process
    assert first is not None
    first.kill()
    first.wait()
    assert asyncio.run(parser.parse(body)) is not None
    assert parser._process is not None and parser._process.pid != first.pid


def test_close_ends_the_child(parser: IntersectsParser) -> None:
    assert asyncio.run(parser.parse(orjson.dumps({"intersects": POLYGON}))) is not None
    child = parser._process
    assert child is not None
    parser.close()
    assert child.returncode == 0
    parser.close()  # twice is harmless


def test_the_child_ends_when_the_server_is_killed() -> None:
    """SIGKILL gives the server no chance to stop the child: its stdin closes, and it
    exits."""
    script = (
        "import asyncio, orjson, sys, time\n"
        "from twinmesh.stac.api.big_intersects import IntersectsParser\n"
        "p = IntersectsParser()\n"
        f"asyncio.run(p.parse(orjson.dumps({{'intersects': {POLYGON!r}}})))\n"
        "print(p._process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        child = int(server.stdout.readline())
        assert process_running(child)
    finally:
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
    deadline = time.monotonic() + 10
    while process_running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_running(child)
