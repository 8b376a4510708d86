"""Offline validation of STAC objects: core schemas from pystac's package, extension
schemas shipped in ``stac/schemas/``, PROJJSON from pyproj. Never touches the network:
a schema that is not on disk is an error, not a download."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from pystac.validation.local_validator import get_local_schema_cache
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT7

__all__ = ["StacValidationError", "validate_object", "validate_catalog_dir"]

SCHEMA_DIR = Path(__file__).parent / "schemas"


class StacValidationError(ValueError):
    """A STAC document broke its schema; ``errors`` lists every violation."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def _projjson() -> dict[str, Any]:
    import pyproj

    path = Path(pyproj.datadir.get_data_dir()) / "projjson.schema.json"
    return json.loads(path.read_text())


@cache
def _schemas() -> dict[str, dict[str, Any]]:
    known: dict[str, dict[str, Any]] = dict(get_local_schema_cache())
    for path in sorted(SCHEMA_DIR.glob("*/*/schema.json")):
        schema = json.loads(path.read_text())
        known[schema["$id"].rstrip("#")] = schema
    projjson = _projjson()
    # The datacube/projection schemas reference PROJJSON v0.4 or v0.7; pyproj ships
    # one version of that schema (a superset for the fields STAC uses).
    for version in ("v0.4", "v0.5", "v0.6", "v0.7"):
        known[f"https://proj.org/schemas/{version}/projjson.schema.json"] = projjson
    return known


def _retrieve(uri: str) -> Resource:
    schema = _schemas().get(uri.rstrip("#"))
    if schema is None:
        raise NoSuchResource(ref=uri)  # type: ignore[call-arg]
    return Resource.from_contents(schema, default_specification=DRAFT7)


@cache
def _registry() -> Registry:
    return Registry(retrieve=_retrieve)  # type: ignore[call-arg]


def _core_uri(obj: dict[str, Any]) -> str:
    kind = {"Feature": "item", "Collection": "collection", "Catalog": "catalog"}.get(
        obj.get("type", "")
    )
    if kind is None:
        raise StacValidationError([f"not a STAC object: type is {obj.get('type')!r}"])
    version = obj.get("stac_version", "1.1.0")
    return f"https://schemas.stacspec.org/v{version}/{kind}-spec/json-schema/{kind}.json"


def _deepest(err: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """The most specific cause of an anyOf/oneOf failure, so the message names the
    field that is wrong rather than quoting the whole document."""
    leaves: list[jsonschema.ValidationError] = []
    stack = [err]
    while stack:
        e = stack.pop()
        if e.context:
            stack.extend(e.context)
        else:
            leaves.append(e)
    return max(leaves, key=lambda e: (len(e.absolute_path), -len(e.message)))


def validate_object(obj: dict[str, Any]) -> None:
    """Validate one STAC Item, Collection or Catalog against core and its extensions."""
    errors: list[str] = []
    where = f"{obj.get('type')} {obj.get('id')!r}"
    for uri in [_core_uri(obj), *obj.get("stac_extensions", [])]:
        schema = _schemas().get(uri.rstrip("#"))
        if schema is None:
            errors.append(f"{where}: schema {uri} is not available offline")
            continue
        validator = jsonschema.Draft7Validator(schema, registry=_registry())
        try:
            found = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
        except NoSuchResource as exc:
            errors.append(f"{where}: schema {uri} refers to {exc.ref}, not available offline")
            continue
        except Exception as exc:  # jsonschema wraps NoSuchResource in a private class
            ref = getattr(getattr(exc, "_wrapped", exc), "ref", None)
            if ref is None and not isinstance(exc.__cause__, NoSuchResource):
                raise
            ref = ref or getattr(exc.__cause__, "ref", "?")
            errors.append(f"{where}: schema {uri} refers to {ref}, not available offline")
            continue
        for err in found:
            leaf = _deepest(err)
            path = "/".join(str(p) for p in leaf.absolute_path) or "(root)"
            message = leaf.message if len(leaf.message) <= 200 else leaf.message[:197] + "..."
            errors.append(f"{where}: {path}: {message} [{uri}]")
    if errors:
        raise StacValidationError(errors)


_STAC_TYPES = frozenset({"Feature", "Collection", "Catalog"})


def _is_stac(doc: Any) -> bool:
    return isinstance(doc, dict) and ("stac_version" in doc or doc.get("type") in _STAC_TYPES)


def validate_catalog_dir(catalog_dir: Path) -> int:
    """Validate every STAC JSON file under ``catalog_dir``; return how many passed.

    Raises StacValidationError with all violations found across the catalogue.
    """
    paths = sorted(Path(catalog_dir).rglob("*.json"))
    if not paths:
        raise StacValidationError([f"no STAC documents under {catalog_dir}"])
    errors: list[str] = []
    for path in paths:
        try:
            doc = json.loads(path.read_text())
            if not _is_stac(doc):
                continue  # an asset stored beside the documents (e.g. model parameters)
            validate_object(doc)
        except StacValidationError as exc:
            errors.extend(f"{path.relative_to(catalog_dir)}: {e}" for e in exc.errors)
        except json.JSONDecodeError as exc:
            errors.append(f"{path.relative_to(catalog_dir)}: not JSON: {exc}")
    if errors:
        raise StacValidationError(errors)
    return sum(1 for p in paths if _is_stac(json.loads(p.read_text())))
