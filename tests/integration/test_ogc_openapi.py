"""schemathesis over the OGC service's own OpenAPI document, offline, in-process (ASGI):
no 5xx for any request the document allows, and every status the service answers is
documented. The number of examples per operation is bounded to keep the suite fast."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

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
    failures: dict[str, str] = {}
    operations = [result.ok() for result in ogc_schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:

        @given(operation.as_strategy())
        @hypothesis_settings(
            max_examples=5,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case) -> None:  # noqa: ANN001
            case.call_and_validate(checks=[not_a_server_error, status_code_conformance])

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - collected, reported together below
            failures[operation.label] = str(exc)[:600]
    assert not failures, "\n\n".join(f"{k}: {v}" for k, v in failures.items())


def test_the_document_has_no_external_reference(ogc_schema) -> None:  # noqa: ANN001
    text = json.dumps(ogc_schema.raw_schema)
    assert not re.findall(r'"\$ref": "(?!#)', text)
    paths = ogc_schema.raw_schema["paths"]
    assert "/processes/{processId}/execution" in paths or any("execution" in p for p in paths)
