"""stac-api-validator, the public STAC API conformance tool, run offline.

The tool validates every document it fetches with stac-validator, which downloads the
STAC JSON schemas (schemas.stacspec.org, stac-extensions.github.io) on first use. This
machine, CI and many operators' networks cannot: every check then fails with a
connection error instead of saying anything about the API. This wrapper gives
stac-validator the schemas twinmesh already ships for its own offline validation
(:mod:`twinmesh.stac.validate`: core schemas from pystac, extension schemas from
``stac/schemas/``) and refuses every other schema URL with a clear error, never a
download. Nothing else of the tool is changed.

Run it like the tool itself (``--help`` lists the options)::

    python -m tests.helpers.stac_api_validator --root-url http://127.0.0.1:8081/ \\
        --conformance core --conformance item-search ...
"""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import urlsplit

__all__ = ["offline_schemas", "main"]


#: Where STAC, its extensions and PROJJSON publish their JSON schemas.
SCHEMA_HOSTS = frozenset(
    {
        "schemas.stacspec.org",
        "stac-extensions.github.io",
        "geojson.org",
        "proj.org",
        "cdn.staclint.com",
    }
)


class SchemaNotOffline(OSError):
    """A schema the validator asked for is not shipped with twinmesh."""


def offline_schemas() -> None:
    """Make stac-validator read schemas from twinmesh's shipped copies only."""
    import stac_validator.utilities as utilities

    from twinmesh.stac.validate import _schemas

    fetch_document = utilities.fetch_and_parse_file

    def fetch_and_parse_file(input_path: str, headers: dict[str, Any] | None = None) -> dict:
        if urlsplit(input_path).hostname in SCHEMA_HOSTS:
            schema = _schemas().get(input_path.rstrip("#"))
            if schema is None:
                raise SchemaNotOffline(
                    f"schema {input_path} is not shipped with twinmesh (no download)"
                )
            return json.loads(json.dumps(schema))  # a copy: the validator may mutate it
        return dict(fetch_document(input_path, headers))  # the API's own documents

    utilities.fetch_and_parse_file = fetch_and_parse_file  # type: ignore[assignment]
    utilities._fetch_and_parse_schema_cache_clear()


def main(argv: list[str] | None = None) -> None:
    offline_schemas()
    from stac_api_validator.__main__ import main as validator_main

    validator_main(args=argv if argv is not None else sys.argv[1:], prog_name="stac-api-validator")


if __name__ == "__main__":
    main()
