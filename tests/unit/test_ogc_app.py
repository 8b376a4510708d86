"""The OGC service's configuration generated from core, and the HTTP rules around
pygeoapi (body limit, OGC exception JSON, a 500 that names only a request id)."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from twinmesh.core.capabilities import CAPABILITIES
from twinmesh.core.settings import Settings
from twinmesh.ogc.app import guard
from twinmesh.ogc.config import CURRENT_WARNINGS, ogc_config
from twinmesh.ogc.context import SETTINGS_KEY, engine_for, settings_of


def test_config_names_every_datacube_feature_collection_and_capability(
    demo_settings: Settings,
) -> None:
    config = ogc_config(demo_settings)
    resources = config["resources"]
    for twin in ("fulda", "delaware"):
        for suffix in ("forcing", "spi-3", "warnings", "regions", "gauges"):
            assert f"{twin}-{suffix}" in resources
        # Cubes without a t/y/x grid are not coverages (reanalysis, observed, ensemble).
        assert f"{twin}-discharge-reanalysis" not in resources
    assert CURRENT_WARNINGS in resources
    processes = {k for k, v in resources.items() if v["type"] == "process"}
    assert processes == set(CAPABILITIES)  # a new capability is a new process
    forcing = resources["fulda-forcing"]
    assert [p["type"] for p in forcing["providers"]] == ["edr", "coverage"]
    assert forcing["extents"]["temporal"]["begin"].isoformat().startswith("1979-01-01")
    # Every plugin reaches core through the settings it carries.
    manager = config["server"]["manager"]
    assert settings_of(manager).data_dir == demo_settings.data_dir
    assert all(SETTINGS_KEY in p for r in resources.values() for p in r.get("providers", []))
    assert engine_for(manager) is engine_for(resources["forecast"]["processor"])


def _app(route: Any) -> httpx.AsyncClient:
    inner = Starlette(routes=[Route("/x", route, methods=["GET", "POST"])])
    guarded = guard(inner, max_body_bytes=1000)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://t")


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


async def _boom(request: Request) -> JSONResponse:
    raise RuntimeError("/secret/path/in/the/message")


@pytest.mark.anyio
async def test_a_body_over_the_limit_is_a_413_naming_it() -> None:
    async with _app(_echo) as client:
        assert (await client.post("/x", content=b"a" * 1000)).json() == {"size": 1000}
        too_big = await client.post("/x", content=b"a" * 1001)
        assert too_big.status_code == 413
        body = too_big.json()
        assert body["type"] == "PayloadTooLarge" and "1000 bytes" in body["description"]

        async def chunks():  # no content-length: counted as it arrives
            for _ in range(5):
                yield b"a" * 400

        streamed = await client.post("/x", content=chunks())
        assert streamed.status_code == 413


@pytest.mark.anyio
async def test_an_unexpected_error_is_a_500_with_a_request_id_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="twinmesh.ogc"):
        async with _app(_boom) as client:
            response = await client.get("/x")
    assert response.status_code == 500
    body = response.json()
    assert body["type"] == "InternalError" and "secret" not in response.text
    ref = body["description"].split("request id ")[1].rstrip(")")
    assert any(ref in r.getMessage() for r in caplog.records)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
