"""Warnings, current warnings, regions and gauges over OGC API - Features, against the
real app on 127.0.0.1 with owslib: warnings recorded by running the real ``warnings``
capability, every filter compared with a brute-force selection of the same features,
and client mistakes answered with a 4xx in the OGC exception JSON, never a 5xx."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from owslib.ogcapi.features import Features
from shapely.geometry import box, shape

from tests.helpers.ogc_server import OgcServer, running_ogc_server
from twinmesh.core.engine import Engine
from twinmesh.core.settings import Settings
from twinmesh.core.twin import Twin

#: Issue days the demo twins can forecast from (fulda twice: a log with two issues).
ISSUES = [("fulda", "1987-03-10"), ("fulda", "1987-03-20"), ("delaware", "1980-06-15")]

Feature = dict[str, Any]


@dataclass
class Ogc:
    server: OgcServer
    settings: Settings
    engine: Engine
    fulda: Twin
    delaware: Twin

    @property
    def features(self) -> Features:
        return Features(self.server.url, timeout=120)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.server.url}{path}", params=params, timeout=120)


@pytest.fixture(scope="module")
def ogc(demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ogc]:
    """A private data dir (a copy of the demo store, its own database) with the warnings
    of ISSUES in its log, and the OGC API over it."""
    data_dir = tmp_path_factory.mktemp("ogc-features")
    store = data_dir / "store"
    shutil.copytree(demo_settings.resolved_store_url, store)
    settings = Settings(
        data_dir=data_dir,
        store_url=str(store),
        database_url=f"sqlite:///{data_dir / 'twinmesh.sqlite'}",
    )
    engine = Engine(settings)
    try:
        for twin, issued in ISSUES:
            engine.run(twin, "warnings", {"issued": issued})
        with running_ogc_server(settings) as server:
            yield Ogc(server, settings, engine, engine.twin("fulda"), engine.twin("delaware"))
    finally:
        engine.close()


def all_items(ogc: Ogc, collection: str, **params: Any) -> list[Feature]:
    """Every item, page by page through owslib, checking numberMatched on each page."""
    out: list[Feature] = []
    matched = None
    while True:
        page = ogc.features.collection_items(collection, limit=7, offset=len(out), **params)
        matched = page["numberMatched"] if matched is None else matched
        assert page["numberMatched"] == matched
        assert page["numberReturned"] == len(page["features"])
        out += page["features"]
        if not page["features"]:
            break
    assert len(out) == matched
    return out


def ids(features: list[Feature]) -> list[Any]:
    return [f["id"] for f in features]


def select(features: list[Feature], test: Callable[[Feature], bool]) -> list[Any]:
    return [f["id"] for f in features if test(f)]


def test_owslib_lists_the_feature_collections(ogc: Ogc) -> None:
    collections = set(ogc.features.feature_collections())
    for twin in ("fulda", "delaware"):
        assert {f"{twin}-warnings", f"{twin}-regions", f"{twin}-gauges"} <= collections
    assert "current-warnings" in collections
    queryables = ogc.features.collection_queryables("fulda-warnings")["properties"]
    assert queryables["geometry"]["x-ogc-role"] == "primary-geometry"
    assert queryables["id"]["x-ogc-role"] == "id"
    assert queryables["issued"] == {
        "title": "issued",
        "type": "string",
        "format": "date",
        "x-ogc-role": "primary-instant",
    }
    for name in ("flood_level", "drought_level", "flood_probability", "model_version"):
        assert name in queryables
    domain = ogc.get("/collections/fulda-warnings/queryables", profile="actual-domain").json()
    assert set(domain["properties"]["flood_level"]["enum"]) <= {"none", "medium", "high", "severe"}


def test_the_warning_log_in_log_order(ogc: Ogc) -> None:
    features = all_items(ogc, "fulda-warnings")
    events = ogc.engine.log.replay(kinds="warning", twin="fulda")
    assert ids(features) == [e.seq for e in events]
    assert len(features) == 2 * len(ogc.fulda.regions)
    for feature, event in zip(features, events, strict=True):
        p = feature["properties"]
        assert feature["geometry"] == ogc.fulda.region(event.region or "").geometry
        assert p["region_id"] == event.region and p["twin_id"] == "fulda"
        for name in ("flood_level", "drought_level", "flood_probability", "issued", "valid_to"):
            assert p[name] == event.payload[name]
        assert p["model_version"] == int(event.payload["model_version"])
        assert p["forcing_mode"].startswith("forecast from ensemble forcing")
    assert {f["properties"]["issued"] for f in features} == {"1987-03-10", "1987-03-20"}
    one = ogc.features.collection_item("fulda-warnings", str(features[3]["id"]))
    assert {k: one[k] for k in ("id", "geometry", "properties")} == {
        k: features[3][k] for k in ("id", "geometry", "properties")
    }
    # The other twin's log is its own collection.
    delaware = all_items(ogc, "delaware-warnings")
    assert {f["properties"]["twin_id"] for f in delaware} == {"delaware"}


def test_bbox_datetime_and_property_filters_match_brute_force(ogc: Ogc) -> None:
    features = all_items(ogc, "fulda-warnings")
    haune = shape(ogc.fulda.region("haune").geometry)
    west, south, east, north = haune.bounds
    corner = [west, south, west + (east - west) / 4, south + (north - south) / 4]
    assert ids(all_items(ogc, "fulda-warnings", bbox=corner)) == select(
        features, lambda f: shape(f["geometry"]).intersects(box(*corner))
    )
    assert ids(all_items(ogc, "fulda-warnings", datetime_="1987-03-20")) == select(
        features, lambda f: f["properties"]["issued"] == "1987-03-20"
    )
    assert ids(all_items(ogc, "fulda-warnings", datetime_="1987-03-01/1987-03-15")) == select(
        features, lambda f: f["properties"]["issued"] == "1987-03-10"
    )
    for level in ("none", "medium", "high", "severe"):
        assert ids(all_items(ogc, "fulda-warnings", flood_level=level)) == select(
            features, lambda f, level=level: f["properties"]["flood_level"] == level
        )
    both = all_items(ogc, "fulda-warnings", flood_level="none", region_id="haune")
    assert ids(both) == select(
        features,
        lambda f: (
            f["properties"]["flood_level"] == "none" and f["properties"]["region_id"] == "haune"
        ),
    )


CQL2_TEXT: list[tuple[str, Callable[[Feature], bool]]] = [
    ("flood_level <> 'none'", lambda f: f["properties"]["flood_level"] != "none"),
    (
        "flood_level IN ('medium', 'high', 'severe') AND issued = DATE('1987-03-20')",
        lambda f: (
            f["properties"]["flood_level"] != "none" and f["properties"]["issued"] == "1987-03-20"
        ),
    ),
    ('"flood_probability.2" >= 0.3', lambda f: f["properties"]["flood_probability"]["2"] >= 0.3),
    (
        "peak_discharge_m3s > 30 OR spi < 0",
        lambda f: (
            f["properties"]["peak_discharge_m3s"] > 30
            or (f["properties"]["spi"] is not None and f["properties"]["spi"] < 0)
        ),
    ),  # fmt: skip
    ("region_name LIKE '%Fulda'", lambda f: f["properties"]["region_name"].endswith("Fulda")),
    (
        "S_INTERSECTS(geometry, POLYGON((9.6 50.5, 9.9 50.5, 9.9 50.8, 9.6 50.8, 9.6 50.5)))",
        lambda f: shape(f["geometry"]).intersects(box(9.6, 50.5, 9.9, 50.8)),
    ),
    (
        "issued T_AFTER TIMESTAMP('1987-03-15T00:00:00Z')",
        lambda f: date.fromisoformat(f["properties"]["issued"]) > date(1987, 3, 15),
    ),
]


@pytest.mark.parametrize(("text", "brute"), CQL2_TEXT, ids=[t for t, _ in CQL2_TEXT])
def test_a_cql2_text_filter_returns_exactly_the_matching_features(
    ogc: Ogc, text: str, brute: Callable[[Feature], bool]
) -> None:
    features = all_items(ogc, "fulda-warnings")
    expected = select(features, brute)
    assert ids(all_items(ogc, "fulda-warnings", filter=text)) == expected
    assert ids(all_items(ogc, "fulda-warnings", filter=text, **{"filter-lang": "cql2-text"})) == (
        expected
    )


def test_a_cql2_json_filter_in_a_post_body(ogc: Ogc) -> None:
    features = all_items(ogc, "fulda-warnings")
    body = {
        "op": "and",
        "args": [
            {"op": "=", "args": [{"property": "issued"}, {"date": "1987-03-20"}]},
            {"op": "<>", "args": [{"property": "flood_level"}, "none"]},
        ],
    }
    result = ogc.features.collection_items("fulda-warnings", limit=100, cql=body)
    assert ids(result["features"]) == select(
        features,
        lambda f: (
            f["properties"]["issued"] == "1987-03-20" and f["properties"]["flood_level"] != "none"
        ),
    )
    assert result["numberMatched"] == len(result["features"])


def test_current_warnings_hold_one_feature_per_region_of_every_twin(ogc: Ogc) -> None:
    current = all_items(ogc, "current-warnings")
    regions = [(t.id, r.id) for t in (ogc.delaware, ogc.fulda) for r in t.regions]
    assert ids(current) == [f"{t}:{r}" for t, r in regions]
    for feature in current:
        p = feature["properties"]
        [latest] = ogc.engine.log.warnings(p["twin_id"], region=p["region_id"], limit=1)
        assert p["seq"] == latest.seq
        twin = ogc.fulda if p["twin_id"] == "fulda" else ogc.delaware
        assert feature["geometry"] == twin.region(p["region_id"]).geometry
    assert {f["properties"]["issued"] for f in current if f["id"].startswith("fulda:")} == {
        "1987-03-20"
    }
    one = ogc.features.collection_item("current-warnings", "fulda:haune")
    assert one["properties"]["region_id"] == "haune"
    # A policy map in one request.
    page = ogc.features.collection_items("current-warnings", limit=1000)
    assert page["numberMatched"] == page["numberReturned"] == len(regions)


def test_regions_and_gauges_have_their_geometry(ogc: Ogc) -> None:
    for twin in (ogc.fulda, ogc.delaware):
        regions = all_items(ogc, f"{twin.id}-regions")
        assert ids(regions) == [r.id for r in twin.regions]
        for feature, region in zip(regions, twin.regions, strict=True):
            assert feature["geometry"] == region.geometry
            assert feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
            assert feature["properties"]["outlet_gauge"] == region.outlet_gauge
        gauges = all_items(ogc, f"{twin.id}-gauges")
        assert ids(gauges) == [g.id for g in twin.gauges]
        for feature, gauge in zip(gauges, twin.gauges, strict=True):
            assert feature["geometry"] == {"type": "Point", "coordinates": [gauge.lon, gauge.lat]}
            assert feature["properties"]["name"] == gauge.name
    gauge = ogc.delaware.gauges[5]
    assert ogc.features.collection_item("delaware-gauges", gauge.id)["id"] == gauge.id
    near = [gauge.lon - 0.001, gauge.lat - 0.001, gauge.lon + 0.001, gauge.lat + 0.001]
    assert gauge.id in ids(all_items(ogc, "delaware-gauges", bbox=near))


BAD_REQUESTS: list[tuple[str, dict[str, Any], int, str]] = [
    ("/collections/fulda-warnings/items", {"bbox": "1,2,3"}, 400, "bbox"),
    ("/collections/fulda-warnings/items", {"bbox": "a,b,c,d"}, 400, "bbox"),
    ("/collections/fulda-warnings/items", {"bbox": "nan,0,1,1"}, 400, "bbox"),
    ("/collections/fulda-warnings/items", {"bbox": "0,0,1,100"}, 400, "bbox"),
    ("/collections/fulda-warnings/items", {"datetime": "yesterday"}, 400, "yesterday"),
    ("/collections/fulda-warnings/items", {"datetime": "9" * 20}, 400, ""),
    ("/collections/current-warnings/items", {"datetime": "1987-02-30"}, 400, ""),
    ("/collections/fulda-warnings/items", {"datetime": "1987-03-20/1987-03-01"}, 400, ""),
    ("/collections/fulda-warnings/items", {"filter": "flood_level ==="}, 400, "CQL"),
    ("/collections/fulda-warnings/items", {"filter": "colour = 'red'"}, 400, "colour"),
    ("/collections/fulda-warnings/items", {"filter": "eval('1') = 1"}, 400, "eval"),
    ("/collections/fulda-warnings/items", {"filter": "members LIKE 'x'"}, 400, "LIKE"),
    ("/collections/fulda-warnings/items", {"colour": "red"}, 400, "colour"),
    ("/collections/fulda-warnings/items", {"members": "many"}, 400, "members"),
    ("/collections/fulda-warnings/items", {"limit": "0"}, 400, "limit"),
    ("/collections/fulda-warnings/items", {"limit": "ten"}, 400, "limit"),
    ("/collections/fulda-warnings/items", {"offset": "-1"}, 400, "offset"),
    ("/collections/fulda-warnings/items", {"sortby": "colour"}, 400, "sortby"),
    ("/collections/fulda-warnings/items", {"resulttype": "all"}, 400, "resulttype"),
    ("/collections/fulda-regions/items", {"datetime": "1987-03-20"}, 400, "datetime"),
    ("/collections/fulda-gauges/items", {"flood_level": "high"}, 400, "flood_level"),
    ("/collections/fulda-warnings/items/999999", {}, 404, "999999"),
    ("/collections/fulda-warnings/items/abc", {}, 404, "abc"),
    ("/collections/current-warnings/items/fulda:nowhere", {}, 404, "nowhere"),
    ("/collections/fulda-regions/items/nowhere", {}, 404, "nowhere"),
    ("/collections/fulda-gauges/items/nowhere", {}, 404, "nowhere"),
    ("/collections/atlantis-warnings/items", {}, 404, "not found"),
]


@pytest.mark.parametrize(("path", "params", "status", "phrase"), BAD_REQUESTS)
def test_client_mistakes_are_4xx_in_the_ogc_exception_shape(
    ogc: Ogc, path: str, params: dict[str, Any], status: int, phrase: str
) -> None:
    response = ogc.get(path, **params)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"code", "description"}
    assert phrase.lower() in body["description"].lower()
    assert "Traceback" not in response.text and "/tmp/" not in response.text


_junk = st.text(
    alphabet=st.sampled_from(list("0123456789-.,:/'() =<>%_TZabcdefghijklnoprstuvxyz\"")),
    max_size=30,
)


@settings(max_examples=80)
@given(
    collection=st.sampled_from(["fulda-warnings", "current-warnings", "fulda-regions"]),
    name=st.sampled_from(
        [
            "bbox",
            "datetime",
            "filter",
            "flood_level",
            "members",
            "issued",
            "q",
            "sortby",
            "limit",
            "offset",
            "id",
            "properties",
            "spi",
        ]
    ),  # fmt: skip
    value=_junk,
)
def test_no_query_value_is_a_server_error(ogc: Ogc, collection: str, name: str, value: str) -> None:
    response = ogc.get(f"/collections/{collection}/items", **{name: value})
    assert response.status_code < 500, f"{name}={value!r}: {response.text}"
    if response.status_code >= 400:
        assert {"code", "description"} <= set(response.json())
