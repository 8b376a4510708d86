"""schemathesis over the STAC API's own OpenAPI document (embedded backend, in-process
ASGI, the test catalogue): no 5xx for any request the document allows, every status the
API answers is documented, and the document's own examples are accepted."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from stac_api_contract import build_test_catalog
from starlette.testclient import TestClient

from tests.helpers.openapi_fuzz import fuzz_operations
from twinmesh.core.settings import Settings
from twinmesh.stac.api.app import create_app


@pytest.fixture(scope="module")
def stac_app(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    data_dir: Path = tmp_path_factory.mktemp("stac-schemathesis")
    build_test_catalog(data_dir)
    app = create_app(Settings(data_dir=data_dir))
    with TestClient(app):  # runs the start-up: the index is built
        yield app


@pytest.fixture(scope="module")
def stac_schema(stac_app):  # noqa: ANN001, ANN201
    return schemathesis.openapi.from_asgi("/api", stac_app)


def test_no_server_error_and_every_status_documented(stac_schema) -> None:  # noqa: ANN001
    fuzz_operations(stac_schema, max_examples=25, min_operations=8)


def test_the_documents_examples_are_accepted(stac_app) -> None:  # noqa: ANN001
    with TestClient(stac_app) as client:
        schema = client.get("/api").json()
        assert "422" not in str(schema["paths"]["/search"]["get"]["responses"])
        for status in ("400", "500"):
            assert status in schema["paths"]["/search"]["get"]["responses"]
        assert "413" in schema["paths"]["/search"]["post"]["responses"]
        for parameter in schema["paths"]["/search"]["get"]["parameters"]:
            example = parameter.get("example")
            if example is not None:
                response = client.get("/search", params={parameter["name"]: example})
                assert response.status_code == 200, (parameter["name"], response.text)


@pytest.mark.pgstac
def test_no_server_error_and_every_status_documented_on_pgstac(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The same over HTTP against stac-fastapi-pgstac on a private PostgreSQL."""
    from stac_api_contract import running_stac_server

    from tests.helpers.postgres import TemporaryPostgres
    from twinmesh.stac.api.pgstac import load_catalog_pgstac

    data_dir: Path = tmp_path_factory.mktemp("stac-schemathesis-pgstac")
    build_test_catalog(data_dir)
    with TemporaryPostgres() as postgres:
        load_catalog_pgstac(postgres.dsn, data_dir / "catalog")
        with running_stac_server(data_dir, "pgstac", dsn=postgres.dsn) as url:
            schema = schemathesis.openapi.from_url(f"{url.rstrip('/')}/api")
            schema.config.update(base_url=url.rstrip("/"))
            fuzz_operations(schema, max_examples=25, min_operations=8)
