"""The STAC API service (embedded and pgstac backends)."""

from __future__ import annotations

import os

__all__ = ["stac_fastapi_defaults"]


def stac_fastapi_defaults() -> None:
    """Name the API before stac-fastapi is imported.

    stac-fastapi builds its own settings object when imported and warns when its
    title/version are defaults; twinmesh sets its own on the app, so say so early.
    """
    for key, value in {
        "STAC_FASTAPI_TITLE": "twinmesh STAC API",
        "STAC_FASTAPI_DESCRIPTION": "Datacubes of the twinmesh digital twins",
        "STAC_FASTAPI_LANDING_ID": "twinmesh",
        "STAC_FASTAPI_VERSION": "1.0.0",
    }.items():
        os.environ.setdefault(key, value)


# Any import of the STAC API (the service, the benchmark, a test) comes through here
# before stac-fastapi's own, so none of them warns.
stac_fastapi_defaults()
