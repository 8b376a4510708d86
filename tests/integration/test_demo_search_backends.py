"""The demo twin's catalogue, searched the same way on both STAC backends: the
embedded default and the pgstac scale path give the same demo items, and the Zarr
href an item carries opens with ``xarray.open_zarr``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import xarray as xr
from pystac_client import Client
from stac_api_contract import running_stac_server

from tests.helpers.postgres import TemporaryPostgres
from twinmesh.core.settings import Settings

DATASETS = ("forcing", "discharge-observed", "discharge-reanalysis", "spi-3", "forcing-ensemble")
FULDA = {f"fulda-{d}" for d in DATASETS}
DELAWARE = {f"delaware-{d}" for d in DATASETS}


@pytest.fixture(
    scope="module", params=["embedded", pytest.param("pgstac", marks=pytest.mark.pgstac)]
)
def demo_api(request: pytest.FixtureRequest, demo_settings: Settings) -> Iterator[str]:
    if request.param == "embedded":
        with running_stac_server(demo_settings.data_dir, "embedded") as url:
            yield url
        return
    with (
        TemporaryPostgres() as postgres,
        running_stac_server(demo_settings.data_dir, "pgstac", dsn=postgres.dsn) as url,
    ):
        yield url


def _ids(client: Client, **search) -> set[str]:
    # The datacubes' collections (the catalogue also holds models and job results).
    search.setdefault("collections", sorted(FULDA | DELAWARE))
    return {item.id for item in client.search(**search).items()}


def test_search_by_bbox_datetime_and_collection(demo_api: str) -> None:
    client = Client.open(demo_api)
    assert _ids(client) == FULDA | DELAWARE
    assert _ids(client, bbox=[9.5, 50.5, 9.9, 50.9]) == FULDA
    assert _ids(client, bbox=[-75.5, 40.0, -75.0, 40.5]) == DELAWARE
    assert _ids(client, bbox=[-5.0, 40.0, 0.0, 45.0]) == set()
    assert _ids(client, datetime="1985-06-01/1985-06-30") == FULDA
    assert _ids(client, datetime="1980-06-01/1980-06-30") == FULDA | DELAWARE
    assert _ids(client, datetime="1990-01-01/1991-01-01") == set()
    assert _ids(
        client,
        bbox=[9.5, 50.5, 9.9, 50.9],
        datetime="1984-02-01T00:00:00Z/1984-02-28T00:00:00Z",
        collections=["fulda-forcing", "fulda-spi-3"],
    ) == {"fulda-forcing", "fulda-spi-3"}


def test_open_zarr_from_the_asset_found(demo_api: str) -> None:
    client = Client.open(demo_api)
    item = next(client.search(collections=["fulda-forcing"], bbox=[9.6, 50.6, 9.7, 50.7]).items())
    asset = item.assets["zarr"]
    assert asset.media_type == "application/vnd+zarr"
    cube = xr.open_zarr(asset.href, consolidated=False)
    february = cube["precipitation"].sel(t=slice("1984-02-01", "1984-02-10"))
    assert february.dims == ("t", "y", "x") and february.sizes["t"] == 10
    assert float(february.mean()) > 0
