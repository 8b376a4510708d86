"""schemathesis over the OGC service's own OpenAPI document, offline, in-process (ASGI):
no 5xx for any request the document allows, and every status the service answers is
documented. The number of examples per operation is bounded to keep the suite fast."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import schemathesis

from tests.helpers.openapi_fuzz import fuzz_operations
from twinmesh.core.settings import Settings
from twinmesh.ogc.app import create_app


@pytest.fixture(scope="module")
def ogc_schema(demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    """The app over a private copy of the demo store (executions create jobs there)."""
    data_dir = tmp_path_factory.mktemp("ogc-schemathesis")
    shutil.copytree(demo_settings.resolved_store_url, data_dir / "store")
    settings = Settings(data_dir=data_dir)
    app = create_app(settings)
    return schemathesis.openapi.from_asgi("/openapi?f=json", app)


def test_no_server_error_and_every_status_documented(ogc_schema) -> None:  # noqa: ANN001
    """Every operation, a bounded number of generated requests each; failures are
    collected per operation so one report names them all. (schemathesis' pytest plugin
    does not run under this pytest; its operations and strategies are used directly.)"""
    fuzz_operations(ogc_schema, max_examples=5, min_operations=21)


def test_the_document_has_no_external_reference(ogc_schema) -> None:  # noqa: ANN001
    text = json.dumps(ogc_schema.raw_schema)
    assert not re.findall(r'"\$ref": "(?!#)', text)
    paths = ogc_schema.raw_schema["paths"]
    assert "/processes/{processId}/execution" in paths or any("execution" in p for p in paths)
