"""The OGC service's OpenAPI document, self-contained and honest about its statuses.

pygeoapi's generated document points at schemas.opengis.net (and GitHub) for its shared
parameters, responses and schemas: a client without internet — a test, an air-gapped
platform, schemathesis here — cannot resolve it. :func:`self_contained` replaces every
external ``$ref`` with a local component (written here from the OGC API standards'
definitions, reduced to what the service answers) and documents, on every operation,
each status the service returns besides pygeoapi's: 400, 404, 405, 413 and 500 as OGC
exception documents.
"""

from __future__ import annotations

import re
from copy import deepcopy
from typing import Any

__all__ = ["self_contained", "EXCEPTION_SCHEMA"]

EXCEPTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "code": {"type": "string"},
        "type": {"type": "string"},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "detail": {"type": "string"},
        "status": {"type": "integer"},
        "instance": {"type": "string"},
    },
}

_JSON_OBJECT = {"type": "object"}
_LINK = {
    "type": "object",
    "required": ["href"],
    "properties": {
        "href": {"type": "string"},
        "rel": {"type": "string"},
        "type": {"type": "string"},
        "title": {"type": "string"},
        "hreflang": {"type": "string"},
    },
}


def _json_response(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or _JSON_OBJECT}},
    }


def _error(description: str) -> dict[str, Any]:
    return _json_response(description, {"$ref": "#/components/schemas/exception"})


def _query(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
        "style": "form",
        "explode": False,
        **extra,
    }


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


#: Local definitions of the shared components pygeoapi refers to, by kind and name.
_LOCAL: dict[str, dict[str, Any]] = {
    "responses": {
        "LandingPage": _json_response("The landing page: links to the API's resources."),
        "Conformance": _json_response("The conformance classes the API implements."),
        "Collections": _json_response("The collections of the service."),
        "Collection": _json_response("One collection's description."),
        "Features": {
            "description": "A GeoJSON FeatureCollection of the selected features.",
            "content": {
                "application/geo+json": {"schema": _JSON_OBJECT},
                "application/json": {"schema": _JSON_OBJECT},
            },
        },
        "Feature": {
            "description": "One GeoJSON feature.",
            "content": {
                "application/geo+json": {"schema": _JSON_OBJECT},
                "application/json": {"schema": _JSON_OBJECT},
            },
        },
        "InvalidParameter": _error("A query parameter has an invalid value."),
        "NotFound": _error("The requested resource does not exist."),
        "ServerError": _error("A server error occurred (the body names a request id)."),
        "ProcessList": _json_response("The processes the service offers."),
        "ExecuteAsync": {
            "description": "The job was created and queued (asynchronous execution).",
            "headers": {
                "Location": {"description": "URL of the job", "schema": {"type": "string"}}
            },
            "content": {"application/json": {"schema": _JSON_OBJECT}},
        },
    },
    "parameters": {
        "datetime": _query(
            "datetime",
            "An RFC 3339 date-time or an interval (open with '..').",
            {"type": "string"},
        ),
        "featureId": _path("featureId", "Local identifier of a feature."),
        "bbox": _query(
            "bbox",
            "Bounding box: minx,miny,maxx,maxy (WGS84 longitude/latitude).",
            {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 6},
        ),
        "parameter-name": _query(
            "parameter-name",
            "Comma-separated names of the parameters to return.",
            {"type": "string"},
        ),
        "instanceId": _path("instanceId", "Identifier of an instance of the collection."),
        "locationId": _path("locationId", "Identifier of a location."),
        "z": _query("z", "Vertical level(s).", {"type": "string"}),
        "subset": _query(
            "subset",
            "Subset along an axis, e.g. subset=x(9.5:10),y(50.5:51).",
            {"type": "array", "items": {"type": "string"}},
        ),
        "sortby": _query(
            "sortby", "Properties to sort by, '-' for descending.", {"type": "string"}
        ),
        "q": _query("q", "Free-text search terms.", {"type": "string"}),
        "tileMatrixSetId": _path("tileMatrixSetId", "Identifier of a tile matrix set."),
        "tileMatrix": _path("tileMatrix", "Identifier of a tile matrix."),
        "tileRow": _path("tileRow", "Row of a tile."),
        "tileCol": _path("tileCol", "Column of a tile."),
    },
    "schemas": {
        "exception": EXCEPTION_SCHEMA,
        "coverageJSON": _JSON_OBJECT,
        "execute": {
            "type": "object",
            "properties": {
                "inputs": _JSON_OBJECT,
                "outputs": _JSON_OBJECT,
                "response": {"type": "string"},
            },
        },
        "link": _LINK,
        "cql2": _JSON_OBJECT,
    },
}

_KINDS = ("responses", "parameters", "schemas")


def _local_name(ref: str) -> tuple[str, str]:
    """(kind, name) of the local component that replaces an external ``$ref``."""
    url, _, fragment = ref.partition("#")
    if fragment:
        parts = fragment.strip("/").split("/")
        if len(parts) >= 3 and parts[0] == "components" and parts[1] in _KINDS:
            return parts[1], parts[2]
    segments = url.rstrip("/").split("/")
    name = re.sub(r"\.(ya?ml|json)$", "", segments[-1])
    kind = next((k for k in _KINDS if k in segments), "schemas")
    if "cql2" in url:
        return "schemas", "cql2"
    return kind, name


def _generic(kind: str, name: str) -> dict[str, Any]:
    if kind == "responses":
        return _json_response(name)
    if kind == "parameters":
        return _query(name, name, {"type": "string"})
    return _JSON_OBJECT


def _replace_refs(node: Any, used: set[tuple[str, str]]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            kind, name = _local_name(ref)
            used.add((kind, name))
            return {
                **{k: v for k, v in node.items() if k != "$ref"},
                "$ref": f"#/components/{kind}/{name}",
            }
        return {k: _replace_refs(v, used) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_refs(v, used) for v in node]
    return node


_ERRORS = {
    "400": "A query parameter, the body or the path has an invalid value.",
    "404": "No such resource.",
    "405": "The method is not allowed on this path.",
    "500": "Internal error: the body names a request id that is in the service's log.",
}


def self_contained(openapi: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``openapi`` without external references and with every status the
    service answers documented on every operation."""
    used: set[tuple[str, str]] = set()
    doc = _replace_refs(deepcopy(openapi), used)
    components = doc.setdefault("components", {})
    used.add(("schemas", "exception"))
    for kind, name in sorted(used):
        section = components.setdefault(kind, {})
        section.setdefault(name, deepcopy(_LOCAL.get(kind, {}).get(name) or _generic(kind, name)))
    for item in doc.get("paths", {}).values():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "delete", "patch", "options"):
                continue
            responses = operation.setdefault("responses", {})
            for status, description in _ERRORS.items():
                responses.setdefault(status, _error(description))
            if method in ("post", "put", "patch"):
                responses.setdefault("413", _error("The request body is over the limit."))
                responses.setdefault("415", _error("The body is not in a media type it takes."))
    return doc
