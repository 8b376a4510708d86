"""schemathesis over the openEO service's own OpenAPI document (in-process ASGI, a
private copy of the demo store): no 5xx for any request the document allows, and every
status the service answers is documented (as an openEO error object)."""

from __future__ import annotations

import shutil

import pytest
import schemathesis
from starlette.testclient import TestClient

from tests.helpers.openapi_fuzz import fuzz_operations
from twinmesh.core.settings import Settings
from twinmesh.openeo.app import create_app


@pytest.fixture(scope="module")
def openeo_schema(demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    data_dir = tmp_path_factory.mktemp("openeo-schemathesis")
    shutil.copytree(demo_settings.resolved_store_url, data_dir / "store")
    app = create_app(Settings(data_dir=data_dir))
    with TestClient(app):
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_server_error_and_every_status_documented(openeo_schema) -> None:  # noqa: ANN001
    fuzz_operations(openeo_schema, max_examples=10, min_operations=15)


def test_errors_are_documented_as_openeo_error_objects(openeo_schema) -> None:  # noqa: ANN001
    raw = openeo_schema.raw_schema
    assert raw["components"]["schemas"]["OpenEOError"]["required"] == ["code", "message"]
    responses = raw["paths"]["/result"]["post"]["responses"]
    assert {"400", "401", "413", "415", "500"} <= set(responses) and "422" not in responses
