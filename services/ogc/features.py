"""The warning log, the current warnings, the regions and the gauges of the twins as
OGC API Features: pygeoapi feature providers over core (``engine.log``, the twin
documents), named by the configuration that ``twinmesh.ogc.config`` generates.

Collections and their feature ids (stable across requests and restarts):

* ``<twin>-warnings`` (:class:`WarningLogProvider`): every warning the twin issued, one
  feature per region and issue, in log order; the id is the event's sequence number.
* ``current-warnings`` (:class:`CurrentWarningsProvider`): the latest recorded warning
  of every region of every twin (core's ``EventLog.warnings(latest_per_region=True)``),
  so a policy map needs one request; the id is ``"<twin>:<region>"``.
* ``<twin>-regions`` (:class:`RegionsProvider`): the region polygons; id = region id.
* ``<twin>-gauges`` (:class:`GaugesProvider`): the gauges as Points; id = gauge id.

A warning's geometry is its region's polygon in the twin document (null when the region
is no longer there). Its properties are core's ``WarningProperties`` (the fields are
generated from that declaration) plus ``seq``, ``job_id`` and ``recorded``.

Query semantics, the same in every collection:

* ``bbox``: features whose geometry intersects the box (4 or 6 numbers, CRS84; a box
  with west > east crosses the antimeridian).
* ``datetime`` (warning collections only): an instant or an interval (``a/b``, ``../b``,
  ``a/..``); it selects warnings whose **issue day** (``issued``, a whole UTC day)
  intersects it. The validity window is reachable through ``filter``.
* ``<property>=<value>``: equality on a scalar property, the value read as the
  property's type (``flood_level=high``, ``members=9``, ``issued=1987-03-20``).
* ``filter`` (CQL2 text, or CQL2 JSON in a POST body): evaluated over the features by a
  small interpreter in this module (see :func:`compile_cql2`), never by ``eval``.
* ``q``: comma-separated terms; a feature matches when any string property contains any
  term (case-insensitive).
* ``sortby``, ``properties``, ``skipGeometry``, ``limit``/``offset`` with the exact
  ``numberMatched``; ``resulttype=hits``.

Every client mistake is a 400 in the OGC exception JSON naming what was wrong (an unknown
query parameter included: the providers ask pygeoapi to pass every non-reserved
parameter on, and refuse those they do not know); an unknown item id is a 404.
"""

from __future__ import annotations

import logging
import math
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, ClassVar

import shapely
from pydantic import BaseModel
from pygeoapi.crs import crs_transform
from pygeoapi.provider.base import (
    BaseProvider,
    ProviderGenericError,
    ProviderInvalidQueryError,
    ProviderItemNotFoundError,
)
from pygeofilter import ast as cql
from pygeofilter import values as cql_values
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from twinmesh.core.capabilities.early_warning import WarningProperties
from twinmesh.core.errors import InvalidInput, NotFoundError, TwinmeshError
from twinmesh.core.events import MAX_REPLAY_LIMIT, Event
from twinmesh.core.twin import Gauge, Region, Twin
from twinmesh.ogc.context import engine_for

__all__ = [
    "WarningLogProvider",
    "CurrentWarningsProvider",
    "RegionsProvider",
    "GaugesProvider",
    "InvalidFeatureQuery",
    "compile_cql2",
    "warning_fields",
    "CURRENT_ID_SEPARATOR",
]

logger = logging.getLogger(__name__)

Feature = dict[str, Any]
#: A compiled CQL2 condition: True, False or None (unknown, e.g. a comparison with null).
Condition = Callable[[Feature], bool | None]

#: ``current-warnings`` ids are ``"<twin>:<region>"`` (twin ids have no ``:``).
CURRENT_ID_SEPARATOR = ":"
#: Query parameters pygeoapi handles itself before calling a provider.
_RESERVED = (
    "bbox",
    "bbox-crs",
    "crs",
    "datetime",
    "f",
    "filter",
    "filter-crs",
    "filter-lang",
    "lang",
    "limit",
    "offset",
    "properties",
    "q",
    "resulttype",
    "skipGeometry",
    "sortby",
)
#: How many distinct values ``get_domains`` reports per property.
_MAX_DOMAIN_VALUES = 100
_LOWEST = datetime.min.replace(tzinfo=UTC)
_HIGHEST = datetime.max.replace(tzinfo=UTC)


class InvalidFeatureQuery(ProviderInvalidQueryError):
    """A client's mistake in a features query: pygeoapi answers 400 with this message."""

    ogc_exception_code = "InvalidParameterValue"

    def __init__(self, message: str) -> None:
        super().__init__(message, user_msg=message)


class _ItemNotFound(ProviderItemNotFoundError):
    def __init__(self, message: str) -> None:
        super().__init__(message, user_msg=message)


class _Unavailable(ProviderGenericError):
    """Core could not answer (no data yet, database down): 503, details in the log."""

    ogc_exception_code = "ServiceUnavailable"
    http_status_code = 503
    default_msg = "the twin data is not available right now; try again later"


# -- fields, generated from core's declarations ----------------------------------------


def _schema_of(model: type[BaseModel], exclude: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """JSON Schema of each field of a core model, in the shape pygeoapi's queryables,
    schema and OpenAPI generators take (one ``type``, no ``anyOf``/``default``)."""
    skipped = set(exclude)
    out: dict[str, dict[str, Any]] = {}
    for name, raw in model.model_json_schema()["properties"].items():
        if name in skipped:
            continue
        schema = dict(raw)
        for option in schema.pop("anyOf", []):
            if option.get("type") != "null":
                schema.update(option)
        schema.pop("default", None)
        schema.pop("title", None)
        out[name] = schema
    return out


def warning_fields(id_schema: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The properties of a warning feature: core's ``WarningProperties`` and what the
    log adds (``seq``, ``job_id``, ``recorded``); ``id`` is the feature id."""
    fields: dict[str, dict[str, Any]] = {"id": dict(id_schema)}
    fields.update(_schema_of(WarningProperties))
    fields["seq"] = {"type": "integer", "description": "The warning's place in the event log."}
    fields["job_id"] = {"type": "string", "description": "The job that issued the warning."}
    fields["recorded"] = {
        "type": "string",
        "format": "date-time",
        "description": "When the warning was recorded in the log (UTC).",
    }
    return fields


def _region_fields() -> dict[str, dict[str, Any]]:
    fields: dict[str, dict[str, Any]] = {"id": {"type": "string", "description": "Region id."}}
    fields["twin_id"] = {"type": "string", "description": "The twin the region belongs to."}
    fields.update(_schema_of(Region, exclude=("id", "geometry")))
    return fields


def _gauge_fields() -> dict[str, dict[str, Any]]:
    fields: dict[str, dict[str, Any]] = {"id": {"type": "string", "description": "Gauge id."}}
    fields["twin_id"] = {"type": "string", "description": "The twin the gauge belongs to."}
    fields.update(_schema_of(Gauge, exclude=("id",)))
    return fields


def _kind(schema: Mapping[str, Any]) -> str:
    """What a value of this schema is, for typing filters: string, number, boolean,
    date, datetime, object or array."""
    type_ = schema.get("type")
    if type_ == "string":
        return {"date": "date", "date-time": "datetime"}.get(schema.get("format", ""), "string")
    if type_ in ("integer", "number"):
        return "number"
    if type_ in ("boolean", "object", "array"):
        return str(type_)
    return "any"


def _typed(value: Any, kind: str) -> Any:
    """A stored property value as the Python type its kind compares as; a value that
    does not fit its declared kind is unknown (None), so filters and sorting never
    compare a string with a number."""
    if value is None:
        return None
    try:
        if kind == "date" and isinstance(value, str):
            return date.fromisoformat(value)
        if kind == "datetime" and isinstance(value, str):
            return _as_utc(datetime.fromisoformat(value))
    except ValueError:
        return None
    expected = _PYTHON_TYPES.get(kind)
    if expected is None:
        return value
    if isinstance(value, bool) != (kind == "boolean") or not isinstance(value, expected):
        return None
    return value


_PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "number": (int, float),
    "string": str,
    "boolean": bool,
    "date": date,
    "datetime": datetime,
}


# -- query parameters -----------------------------------------------------------------


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, UTC)


def _day_end(day: date) -> datetime:
    return datetime.combine(day, time.max, UTC)


def _parse_instant(text: str, *, end: bool) -> datetime:
    """One side of a ``datetime`` parameter: an RFC 3339 date (the whole day) or date-time."""
    if len(text) == 10:
        day = date.fromisoformat(text)
        return _day_end(day) if end else _day_start(day)
    return _as_utc(datetime.fromisoformat(text))


def parse_datetime_parameter(text: str) -> tuple[datetime, datetime]:
    """``datetime`` as a closed UTC interval; open ends are the extreme datetimes."""
    try:
        if "/" in text:
            first, _, last = text.partition("/")
            if "/" in last:
                raise ValueError("more than one '/'")
            start = _LOWEST if first in ("", "..") else _parse_instant(first, end=False)
            stop = _HIGHEST if last in ("", "..") else _parse_instant(last, end=True)
            if first in ("", "..") and last in ("", ".."):
                raise ValueError("both ends open")
        else:
            start = _parse_instant(text, end=False)
            stop = _parse_instant(text, end=True)
    except (ValueError, OverflowError):
        raise InvalidFeatureQuery(
            f"datetime {text!r} is not an RFC 3339 date, date-time or interval; write e.g. "
            "2024-03-01, 2024-03-01T06:00:00Z, 2024-03-01/2024-03-31 or 2024-03-01/.."
        ) from None
    if start > stop:
        raise InvalidFeatureQuery(f"datetime {text!r} starts after it ends")
    return start, stop


def _bbox_areas(bbox: Sequence[float]) -> list[BaseGeometry]:
    """The bbox parameter as one or two boxes (two when it crosses the antimeridian)."""
    if len(bbox) not in (4, 6):
        raise InvalidFeatureQuery("bbox takes 4 numbers (west,south,east,north) or 6 with heights")
    values = [float(v) for v in bbox]
    if not all(math.isfinite(v) for v in values):
        raise InvalidFeatureQuery("bbox values must be finite numbers")
    west, south, east, north = (
        values if len(values) == 4 else (values[0], values[1], values[3], values[4])
    )
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
        raise InvalidFeatureQuery(
            "bbox must be west,south,east,north in degrees (CRS84): longitudes in "
            "[-180, 180], latitudes in [-90, 90], south <= north"
        )
    if west > east:
        return [box(west, south, 180.0, north), box(-180.0, south, east, north)]
    return [box(west, south, east, north)]


def _equality(name: str, raw: str, schema: Mapping[str, Any]) -> Callable[[Feature], bool]:
    """``name=raw`` as a condition, ``raw`` read as the property's type."""
    kind = _kind(schema)
    value: Any
    try:
        if kind == "number":
            value = int(raw) if schema.get("type") == "integer" else float(raw)
            if not math.isfinite(value):
                raise ValueError
        elif kind == "boolean":
            if raw.lower() not in ("true", "false"):
                raise ValueError
            value = raw.lower() == "true"
        elif kind == "date":
            value = date.fromisoformat(raw)
        elif kind == "datetime":
            value = _as_utc(datetime.fromisoformat(raw))
        elif kind in ("object", "array"):
            raise InvalidFeatureQuery(
                f"property {name!r} is an {kind} and cannot be compared with one value; "
                f'select on it with a CQL2 filter instead (e.g. "{name}.5" > 0.3)'
                if kind == "object"
                else f"property {name!r} is an array; use a CQL2 filter (A_CONTAINS) on it"
            )
        else:
            value = raw
    except ValueError:
        raise InvalidFeatureQuery(
            f"{name}={raw!r}: {name!r} takes {schema.get('format') or schema.get('type')} "
            f"values, and {raw!r} is not one"
        ) from None

    def matches(feature: Feature) -> bool:
        return _typed(_property(feature, name), kind) == value

    return matches


def _property(feature: Feature, name: str) -> Any:
    if name == "id":
        return feature.get("id")
    return feature["properties"].get(name)


def _text_matcher(q: str) -> Callable[[Feature], bool]:
    terms = [t.strip().casefold() for t in q.split(",") if t.strip()]
    if not terms:
        raise InvalidFeatureQuery("q needs at least one search term")

    def strings(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value.casefold()
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)

    def matches(feature: Feature) -> bool:
        texts = [s for v in feature["properties"].values() for s in strings(v)]
        return any(term in text for term in terms for text in texts)

    return matches


# -- CQL2 ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Expr:
    """A compiled CQL2 expression: how to get its value from a feature, and its kind."""

    get: Callable[[Feature], Any]
    kind: str
    text: str
    literal: bool = False


_COMPARISONS: dict[type, Callable[[Any, Any], bool]] = {
    cql.Equal: operator.eq,
    cql.NotEqual: operator.ne,
    cql.LessThan: operator.lt,
    cql.LessEqual: operator.le,
    cql.GreaterThan: operator.gt,
    cql.GreaterEqual: operator.ge,
}
_SPATIAL: dict[type, str] = {
    cql.GeometryIntersects: "intersects",
    cql.GeometryDisjoint: "disjoint",
    cql.GeometryContains: "contains",
    cql.GeometryWithin: "within",
    cql.GeometryTouches: "touches",
    cql.GeometryCrosses: "crosses",
    cql.GeometryOverlaps: "overlaps",
    cql.GeometryEquals: "equals",
}
_ARITHMETIC: dict[type, Callable[[Any, Any], Any]] = {
    cql.Add: operator.add,
    cql.Sub: operator.sub,
    cql.Mul: operator.mul,
    cql.Div: operator.truediv,
}
_FUNCTIONS: dict[str, Callable[[str], str]] = {"lower": str.lower, "upper": str.upper}
_COMPARABLE = {
    "number": {"number"},
    "string": {"string"},
    "boolean": {"boolean"},
    "date": {"date", "datetime"},
    "datetime": {"date", "datetime"},
}
_Interval = tuple[datetime, datetime]


def _relate(op: type, a: _Interval, b: _Interval) -> bool:
    """Allen's relations of two closed intervals (an instant is start == end).

    ``TimeOverlaps`` is evaluated as T_INTERSECTS: pygeofilter 0.4 parses both
    T_INTERSECTS and T_OVERLAPS to it, and T_INTERSECTS is the one clients use."""
    (a1, a2), (b1, b2) = a, b
    relations: dict[type, Callable[[], bool]] = {
        cql.TimeBefore: lambda: a2 < b1,
        cql.TimeAfter: lambda: a1 > b2,
        cql.TimeMeets: lambda: a2 == b1,
        cql.TimeMetBy: lambda: a1 == b2,
        cql.TimeOverlaps: lambda: a1 <= b2 and b1 <= a2,
        cql.TimeOverlappedBy: lambda: b1 < a1 < b2 < a2,
        cql.TimeBegins: lambda: a1 == b1 and a2 < b2,
        cql.TimeBegunBy: lambda: a1 == b1 and a2 > b2,
        cql.TimeDuring: lambda: b1 < a1 and a2 < b2,
        cql.TimeContains: lambda: a1 < b1 and b2 < a2,
        cql.TimeEnds: lambda: b1 < a1 and a2 == b2,
        cql.TimeEndedBy: lambda: a1 < b1 and a2 == b2,
        cql.TimeEquals: lambda: a1 == b1 and a2 == b2,
        cql.TimeDisjoint: lambda: a2 < b1 or b2 < a1,
        cql.TimeBeforeOrDuring: lambda: a2 < b1 or (b1 < a1 and a2 < b2),
        cql.TimeDuringOrAfter: lambda: a1 > b2 or (b1 < a1 and a2 < b2),
    }
    return relations[op]()


def _interval(value: Any) -> _Interval | None:
    """A temporal value as a closed UTC interval: a date is its whole day."""
    if value is None:
        return None
    if isinstance(value, tuple):
        return value
    if isinstance(value, datetime):
        instant = _as_utc(value)
        return instant, instant
    if isinstance(value, date):
        return _day_start(value), _day_end(value)
    raise TypeError(f"{value!r} is not a time")


def _comparable(a: Any, b: Any) -> tuple[Any, Any]:
    """Dates and date-times compare as UTC instants (a date is its midnight)."""
    mixed = isinstance(a, datetime) or isinstance(b, datetime)
    if mixed and isinstance(a, date) and isinstance(b, date):
        return _instant(a), _instant(b)
    return a, b


def _instant(value: date) -> datetime:
    return _as_utc(value) if isinstance(value, datetime) else _day_start(value)


def _like(value: str, pattern: str, nocase: bool) -> bool:
    """CQL2 LIKE (``%`` any run, ``_`` one character, ``\\`` escapes) in O(len·len):
    no regular expression, so no pattern can make it backtrack exponentially."""
    tokens: list[str | None] = []  # None is '%', "" is '_', a character is itself
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i + 1])
            i += 2
            continue
        if c == "%":
            if not tokens or tokens[-1] is not None:
                tokens.append(None)
        else:
            tokens.append("" if c == "_" else c)
        i += 1

    def same(token: str, char: str) -> bool:
        return token == "" or token == char or (nocase and token.lower() == char.lower())

    # Greedy matching, backtracking to the last '%' only: O(len(value) * len(pattern)).
    v = t = 0
    star_t, star_v = -1, 0
    while v < len(value):
        token = tokens[t] if t < len(tokens) else False
        if isinstance(token, str) and same(token, value[v]):
            v += 1
            t += 1
        elif token is None:
            star_t, star_v = t, v
            t += 1
        elif star_t >= 0:
            star_v += 1
            v = star_v
            t = star_t + 1
        else:
            return False
    while t < len(tokens) and tokens[t] is None:
        t += 1
    return t == len(tokens)


class _Cql2Compiler:
    """Compiles a pygeofilter AST into a Python closure over GeoJSON features.

    Why not pygeofilter's native backend: it builds Python source from the filter and
    ``eval``s it with the builtins in scope, and passes function names through, so
    ``filter=eval('...') = 1`` runs client code (checked on pygeofilter 0.4.0). Here every
    node type, attribute and function is looked up in fixed tables; anything else is a
    400 naming it. Comparisons with null are unknown (CQL2's three-valued logic)."""

    def __init__(
        self,
        fields: Mapping[str, Mapping[str, Any]],
        geometry: Callable[[Feature], BaseGeometry | None],
    ) -> None:
        self.fields = fields
        self.geometry = geometry

    # -- conditions -------------------------------------------------------------------
    def condition(self, node: Any) -> Condition:  # noqa: C901 - one branch per node type
        if isinstance(node, bool):
            return lambda _f: node
        if isinstance(node, cql.Not):
            sub = self.condition(node.sub_node)
            return lambda f: None if (v := sub(f)) is None else not v
        if isinstance(node, cql.And | cql.Or):
            return self._combination(node)
        if isinstance(node, cql.Include):
            return lambda _f: not node.not_
        if type(node) in _COMPARISONS:
            return self._comparison(node)
        if isinstance(node, cql.Between):
            return self._between(node)
        if isinstance(node, cql.Like):
            return self._like(node)
        if isinstance(node, cql.In):
            return self._in(node)
        if isinstance(node, cql.IsNull):
            lhs = self.expr(node.lhs)
            return lambda f: (lhs.get(f) is None) != node.not_
        if isinstance(node, cql.Exists):
            return self._exists(node)
        if isinstance(node, cql.TemporalPredicate):
            return self._temporal(node)
        if type(node) in _SPATIAL:
            return self._spatial(node)
        if isinstance(node, cql.BBox):
            return self._bbox(node)
        if isinstance(node, cql.Relate):
            return self._relate_pattern(node)
        if isinstance(node, cql.ArrayPredicate):
            return self._array(node)
        if isinstance(node, cql.Predicate | cql.Condition):
            name = type(node).__name__
            raise InvalidFeatureQuery(f"the filter uses {name}, which this collection cannot do")
        expr = self.expr(node)
        if expr.kind not in ("boolean", "any"):
            raise InvalidFeatureQuery(f"the filter {expr.text} is not a condition")
        return lambda f: None if (v := expr.get(f)) is None else bool(v)

    def _combination(self, node: Any) -> Condition:
        lhs, rhs = self.condition(node.lhs), self.condition(node.rhs)
        if isinstance(node, cql.And):

            def both(f: Feature) -> bool | None:
                a = lhs(f)
                if a is False:
                    return False
                b = rhs(f)
                if b is False:
                    return False
                return True if a and b else None

            return both

        def either(f: Feature) -> bool | None:
            a = lhs(f)
            if a is True:
                return True
            b = rhs(f)
            if b is True:
                return True
            return False if a is False and b is False else None

        return either

    def _comparison(self, node: Any) -> Condition:
        lhs, rhs = self._paired(self.expr(node.lhs), self.expr(node.rhs))
        compare = _COMPARISONS[type(node)]
        if node.op in (cql.ComparisonOp.LT, cql.ComparisonOp.LE, cql.ComparisonOp.GT,
                       cql.ComparisonOp.GE):  # fmt: skip
            for side in (lhs, rhs):
                if side.kind in ("boolean", "object", "array", "geometry"):
                    raise InvalidFeatureQuery(f"{side.text} is a {side.kind} and has no order")

        def comparison(f: Feature) -> bool | None:
            a, b = lhs.get(f), rhs.get(f)
            if a is None or b is None:
                return None
            a, b = _comparable(a, b)
            try:
                return bool(compare(a, b))
            except TypeError:
                raise InvalidFeatureQuery(
                    f"cannot compare {lhs.text} ({type(a).__name__}) with "
                    f"{rhs.text} ({type(b).__name__})"
                ) from None

        return comparison

    def _between(self, node: Any) -> Condition:
        value = self.expr(node.lhs)
        value, low = self._paired(value, self.expr(node.low))
        value, high = self._paired(value, self.expr(node.high))

        def between(f: Feature) -> bool | None:
            v, lo, hi = value.get(f), low.get(f), high.get(f)
            if v is None or lo is None or hi is None:
                return None
            try:
                v_lo, lo = _comparable(v, lo)
                v_hi, hi = _comparable(v, hi)
                inside = bool(lo <= v_lo and v_hi <= hi)
            except TypeError:
                raise InvalidFeatureQuery(
                    f"cannot compare {value.text} with {low.text} and {high.text}"
                ) from None
            return inside != node.not_

        return between

    def _like(self, node: Any) -> Condition:
        value = self.expr(node.lhs)
        pattern = node.pattern
        if not isinstance(pattern, str):
            raise InvalidFeatureQuery("the pattern of LIKE must be a string")
        if value.kind not in ("string", "any"):
            raise InvalidFeatureQuery(f"LIKE needs a string, and {value.text} is a {value.kind}")

        def like(f: Feature) -> bool | None:
            v = value.get(f)
            if v is None:
                return None
            if not isinstance(v, str):
                raise InvalidFeatureQuery(f"LIKE needs a string, and {value.text} is not one")
            return _like(v, pattern, node.nocase) != node.not_

        return like

    def _in(self, node: Any) -> Condition:
        value = self.expr(node.lhs)
        options = []
        for option in node.sub_nodes:
            value, compiled = self._paired(value, self.expr(option))
            options.append(compiled)

        def in_(f: Feature) -> bool | None:
            v = value.get(f)
            if v is None:
                return None
            found = False
            for option in options:
                o = option.get(f)
                if o is not None:
                    a, b = _comparable(v, o)
                    found = found or a == b
            return found != node.not_

        return in_

    def _exists(self, node: Any) -> Condition:
        if not isinstance(node.lhs, cql.Attribute):
            raise InvalidFeatureQuery("EXISTS takes a property name")
        self.expr(node.lhs)  # an unknown property is an error, not "does not exist"
        name = node.lhs.name
        return lambda f: (name == "id" or name in f["properties"]) != node.not_

    def _temporal(self, node: Any) -> Condition:
        lhs, rhs = self._time(node.lhs), self._time(node.rhs)

        def temporal(f: Feature) -> bool | None:
            a, b = lhs(f), rhs(f)
            if a is None or b is None:
                return None
            return _relate(type(node), a, b)

        return temporal

    def _time(self, node: Any) -> Callable[[Feature], _Interval | None]:
        if isinstance(node, cql_values.Interval):
            start = self._interval_end(node.start, end=False)
            stop = self._interval_end(node.end, end=True)
            if start > stop:
                raise InvalidFeatureQuery("a time interval in the filter starts after it ends")
            return lambda _f: (start, stop)
        expr = self.expr(node)
        if expr.kind not in ("date", "datetime", "any"):
            raise InvalidFeatureQuery(f"{expr.text} is a {expr.kind}, not a time")

        def get(f: Feature) -> _Interval | None:
            try:
                return _interval(expr.get(f))
            except TypeError:
                raise InvalidFeatureQuery(f"{expr.text} is not a time") from None

        return get

    @staticmethod
    def _interval_end(value: Any, *, end: bool) -> datetime:
        if value is None or value == "..":
            return _HIGHEST if end else _LOWEST
        if isinstance(value, str):
            try:
                return _parse_instant(value, end=end)
            except ValueError:
                raise InvalidFeatureQuery(f"{value!r} in a filter interval is not a time") from None
        if isinstance(value, datetime):
            return _as_utc(value)
        if isinstance(value, date):
            return _day_end(value) if end else _day_start(value)
        raise InvalidFeatureQuery("the ends of a filter interval must be dates or timestamps")

    def _spatial(self, node: Any) -> Condition:
        lhs, rhs = self._geometry(node.lhs), self._geometry(node.rhs)
        predicate = _SPATIAL[type(node)]
        return self._spatially(lhs, rhs, lambda a, b: getattr(a, predicate)(b))

    def _bbox(self, node: Any) -> Condition:
        lhs = self._geometry(node.lhs)
        areas = _bbox_areas([node.minx, node.miny, node.maxx, node.maxy])
        whole = areas[0] if len(areas) == 1 else shapely.union_all(areas)
        return self._spatially(lhs, lambda _f: whole, lambda a, b: a.intersects(b))

    def _relate_pattern(self, node: Any) -> Condition:
        pattern = str(node.pattern)
        if not re.fullmatch(r"[012TF*]{9}", pattern, flags=re.IGNORECASE):
            raise InvalidFeatureQuery(
                f"{pattern!r} is not a DE-9IM pattern (9 of 0, 1, 2, T, F, *)"
            )
        lhs, rhs = self._geometry(node.lhs), self._geometry(node.rhs)
        return self._spatially(lhs, rhs, lambda a, b: a.relate_pattern(b, pattern.upper()))

    @staticmethod
    def _spatially(
        lhs: Callable[[Feature], BaseGeometry | None],
        rhs: Callable[[Feature], BaseGeometry | None],
        test: Callable[[BaseGeometry, BaseGeometry], bool],
    ) -> Condition:
        def spatial(f: Feature) -> bool | None:
            a, b = lhs(f), rhs(f)
            if a is None or b is None:
                return None
            try:
                return bool(test(a, b))
            except shapely.errors.GEOSException:
                return None  # an invalid geometry has no answer

        return spatial

    def _geometry(self, node: Any) -> Callable[[Feature], BaseGeometry | None]:
        if isinstance(node, cql_values.Envelope):
            # pygeofilter 0.4's CQL2-JSON parser builds {"bbox": [w, s, e, n]} as
            # Envelope(x1=w, x2=s, y1=e, y2=n), its text parser ENVELOPE(w e s n) in the
            # right order: the two cannot be told apart here, so neither is guessed.
            raise InvalidFeatureQuery(
                "bounding-box literals in a filter are not supported (the CQL2 parser "
                "misreads them); write the box as a POLYGON, or use the bbox parameter or "
                "BBOX(geometry, west, south, east, north)"
            )
        if isinstance(node, cql_values.Geometry):
            try:
                literal = shape(node.geometry)
            except (ValueError, TypeError, AttributeError, KeyError, shapely.errors.ShapelyError):
                raise InvalidFeatureQuery(
                    "a geometry in the filter is not valid GeoJSON/WKT"
                ) from None
            return lambda _f: literal
        expr = self.expr(node)
        if expr.kind != "geometry":
            raise InvalidFeatureQuery(
                f"{expr.text} is not a geometry; spatial predicates take 'geometry' or a "
                "geometry literal"
            )
        return expr.get

    def _array(self, node: Any) -> Condition:
        lhs, rhs = self._list(node.lhs), self._list(node.rhs)
        tests: dict[cql.ArrayComparisonOp, Callable[[set[Any], set[Any]], bool]] = {
            cql.ArrayComparisonOp.AEQUALS: operator.eq,
            cql.ArrayComparisonOp.ACONTAINS: operator.ge,
            cql.ArrayComparisonOp.ACONTAINEDBY: operator.le,
            cql.ArrayComparisonOp.AOVERLAPS: lambda a, b: bool(a & b),
        }
        test = tests[node.op]

        def array(f: Feature) -> bool | None:
            a, b = lhs(f), rhs(f)
            if a is None or b is None:
                return None
            try:
                return test(set(a), set(b))
            except TypeError:
                raise InvalidFeatureQuery("array predicates compare arrays of scalars") from None

        return array

    def _list(self, node: Any) -> Callable[[Feature], list[Any] | None]:
        if isinstance(node, list):
            items = [self.expr(item) for item in node]
            return lambda f: [item.get(f) for item in items]
        expr = self.expr(node)
        if expr.kind not in ("array", "any"):
            raise InvalidFeatureQuery(f"{expr.text} is not an array")
        return lambda f: v if isinstance(v := expr.get(f), list) or v is None else [v]

    # -- expressions ------------------------------------------------------------------
    def expr(self, node: Any) -> _Expr:
        if isinstance(node, cql.Attribute):
            return self._attribute(node.name)
        if isinstance(node, cql.Arithmetic):
            return self._arithmetic(node)
        if isinstance(node, cql.Function):
            return self._function(node)
        if isinstance(node, bool):
            return _Expr(lambda _f: node, "boolean", repr(node), literal=True)
        if isinstance(node, int | float):
            if not math.isfinite(node):
                raise InvalidFeatureQuery("numbers in the filter must be finite")
            return _Expr(lambda _f: node, "number", repr(node), literal=True)
        if isinstance(node, str):
            return _Expr(lambda _f: node, "string", repr(node), literal=True)
        if isinstance(node, datetime):
            instant = _as_utc(node)
            return _Expr(lambda _f: instant, "datetime", instant.isoformat(), literal=True)
        if isinstance(node, date):
            return _Expr(lambda _f: node, "date", node.isoformat(), literal=True)
        if isinstance(node, cql_values.Interval):
            get = self._time(node)
            return _Expr(get, "interval", "an interval", literal=True)
        if isinstance(node, cql_values.Geometry | cql_values.Envelope):
            return _Expr(self._geometry(node), "geometry", "a geometry", literal=True)
        if isinstance(node, list):
            items = self._list(node)
            return _Expr(items, "array", "an array", literal=True)
        raise InvalidFeatureQuery(
            f"the filter uses {type(node).__name__} where a value or property is expected"
        )

    def _attribute(self, name: str) -> _Expr:
        if name == "geometry":
            return _Expr(self.geometry, "geometry", "geometry")
        schema = self.fields.get(name)
        if schema is not None:
            kind = _kind(schema)
            return _Expr(lambda f: _typed(_property(f, name), kind), kind, repr(name))
        base, dot, key = name.partition(".")
        parent = self.fields.get(base) if dot else None
        if parent is not None and isinstance(parent.get("additionalProperties"), dict):
            kind = _kind(parent["additionalProperties"])

            def nested(f: Feature) -> Any:
                container = _property(f, base)
                return _typed(container.get(key), kind) if isinstance(container, dict) else None

            return _Expr(nested, kind, repr(name))
        known = ", ".join(["geometry", *self.fields])
        raise InvalidFeatureQuery(
            f"the filter names {name!r}, which is not a queryable of this collection; "
            f"its queryables are: {known}"
        )

    def _arithmetic(self, node: Any) -> _Expr:
        lhs, rhs = self.expr(node.lhs), self.expr(node.rhs)
        for side in (lhs, rhs):
            if side.kind not in ("number", "any"):
                raise InvalidFeatureQuery(f"arithmetic needs numbers, and {side.text} is not one")
        apply = _ARITHMETIC[type(node)]

        def arithmetic(f: Feature) -> Any:
            a, b = lhs.get(f), rhs.get(f)
            if a is None or b is None:
                return None
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b)):
                raise InvalidFeatureQuery("arithmetic needs numbers")
            try:
                return apply(a, b)
            except (ZeroDivisionError, OverflowError):
                return None

        return _Expr(arithmetic, "number", f"({lhs.text} {node.op.value} {rhs.text})")

    def _function(self, node: Any) -> _Expr:
        function = _FUNCTIONS.get(str(node.name).lower())
        if function is None or len(node.arguments) != 1:
            raise InvalidFeatureQuery(
                f"the filter calls {node.name!r}; the functions this collection knows are "
                "CASEI (one argument)"
            )
        argument = self.expr(node.arguments[0])
        if argument.kind not in ("string", "any"):
            raise InvalidFeatureQuery(f"CASEI takes a string, and {argument.text} is not one")

        def call(f: Feature) -> Any:
            v = argument.get(f)
            return function(v) if isinstance(v, str) else None

        return _Expr(call, "string", f"CASEI({argument.text})", literal=argument.literal)

    def _paired(self, a: _Expr, b: _Expr) -> tuple[_Expr, _Expr]:
        """Check two sides can be compared; a string literal facing a date or
        date-time property is read as one (``issued = '1987-03-20'``)."""
        a, b = self._coerced(a, b.kind), self._coerced(b, a.kind)
        if "any" in (a.kind, b.kind) or a.kind in _COMPARABLE.get(b.kind, set()):
            return a, b
        raise InvalidFeatureQuery(
            f"cannot compare {a.text} (a {a.kind}) with {b.text} (a {b.kind})"
        )

    @staticmethod
    def _coerced(expr: _Expr, other_kind: str) -> _Expr:
        if not (expr.literal and expr.kind == "string" and other_kind in ("date", "datetime")):
            return expr
        text = expr.get({})
        try:
            value: date = (
                date.fromisoformat(text)
                if len(text) == 10
                else _as_utc(datetime.fromisoformat(text))
            )
        except ValueError:
            raise InvalidFeatureQuery(f"{text!r} is not a {other_kind}") from None
        return _Expr(lambda _f: value, "datetime" if isinstance(value, datetime) else "date",
                     expr.text, literal=True)  # fmt: skip


def compile_cql2(
    node: Any,
    fields: Mapping[str, Mapping[str, Any]],
    geometry: Callable[[Feature], BaseGeometry | None] | None = None,
) -> Callable[[Feature], bool]:
    """A pygeofilter AST as a test of one GeoJSON feature (unknown counts as no match).

    Every error in the filter (unknown property, wrong types, unsupported function) is an
    :class:`InvalidFeatureQuery` raised here, before any feature is read, or while
    evaluating for type errors only data can reveal."""
    # Keyed by the GeoJSON dict's id, which is kept alive with the shape so that the id
    # cannot be reused by another dict during the request.
    shapes: dict[int, tuple[Any, BaseGeometry]] = {}

    def geometry_of(feature: Feature) -> BaseGeometry | None:
        geom = feature.get("geometry")
        if geom is None:
            return None
        cached = shapes.get(id(geom))
        if cached is None:
            cached = shapes[id(geom)] = (geom, shape(geom))
        return cached[1]

    condition = _Cql2Compiler(fields, geometry or geometry_of).condition(node)
    return lambda feature: condition(feature) is True


# -- providers -------------------------------------------------------------------------


@dataclass
class _Query:
    """A validated features query: everything checked before any data is read."""

    areas: list[BaseGeometry] | None
    interval: tuple[datetime, datetime] | None
    tests: list[Callable[[Feature], bool]]

    def matches(self, feature: Feature) -> bool:
        return all(test(feature) for test in self.tests)


class _CoreFeatureProvider(BaseProvider):  # type: ignore[misc]  # pygeoapi is untyped
    """What the four providers share: validation of every query parameter, filtering,
    sorting, paging and the mapping of core's errors onto pygeoapi's."""

    #: Whether the collection has a time (``datetime`` selects on ``issued``).
    temporal: ClassVar[bool] = False
    #: The twin the collection belongs to, when it belongs to one.
    needs_twin: ClassVar[bool] = True

    def __init__(self, provider_def: dict[str, Any]) -> None:
        super().__init__(provider_def)
        self.engine = engine_for(provider_def)
        self.twin_id: str | None = provider_def.get("twin")
        if self.needs_twin and not self.twin_id:
            raise RuntimeError(f"{type(self).__name__} needs 'twin' in its provider definition")
        self.id_field = "id"
        # pygeoapi passes non-reserved parameters that are not fields only when this is
        # set; the provider then refuses them by name instead of ignoring them.
        self.include_extra_query_parameters = True
        # A fresh copy per instance: pygeoapi's schema and queryables code writes into it.
        self._fields = deepcopy(self.declared_fields())

    # -- what a subclass says ---------------------------------------------------------
    def declared_fields(self) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def features(self, query: _Query) -> Iterable[Feature]:
        """Every feature of the collection, in its natural order; ``query`` lets a
        subclass skip early what cannot match (its areas and interval)."""
        raise NotImplementedError

    def feature(self, identifier: str) -> Feature | None:
        raise NotImplementedError

    # -- pygeoapi's provider API ------------------------------------------------------
    def get_fields(self) -> dict[str, dict[str, Any]]:
        return self._fields

    @crs_transform
    def query(
        self,
        offset: int = 0,
        limit: int = 10,
        resulttype: str = "results",
        bbox: Sequence[float] | None = None,
        datetime_: str | None = None,
        properties: Sequence[tuple[str, str]] | None = None,
        sortby: Sequence[Mapping[str, str]] | None = None,
        select_properties: Sequence[str] | None = None,
        skip_geometry: bool = False,
        q: str | None = None,
        filterq: Any = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Features matching every criterion, sorted, one page of them, and how many
        matched in all (``numberMatched``)."""
        if resulttype not in ("results", "hits"):
            raise InvalidFeatureQuery(f"resulttype is 'results' or 'hits', not {resulttype!r}")
        query = self._query(bbox, datetime_, properties or (), q, filterq)
        order = self._order(sortby or ())
        with self._core_errors():
            matched = [f for f in self.features(query) if query.matches(f)]
        for key, descending in reversed(order):
            matched.sort(key=key, reverse=descending)
        page = [] if resulttype == "hits" else matched[offset : offset + limit]
        selected = [self._shaped(f, select_properties or (), skip_geometry) for f in page]
        return {
            "type": "FeatureCollection",
            "features": selected,
            "numberMatched": len(matched),
            "numberReturned": len(selected),
        }

    @crs_transform
    def get(self, identifier: str, **kwargs: Any) -> Feature:
        with self._core_errors():
            found = self.feature(str(identifier))
        if found is None:
            raise _ItemNotFound(f"{self._what()} has no item {identifier!r}")
        return found

    def get_domains(
        self, properties: Sequence[str] = (), current: bool = False
    ) -> tuple[dict[str, list[Any]], bool]:
        """The values each scalar string or integer property takes now (queryables'
        ``profile=actual-domain``), at most 100 per property."""
        names = [
            n
            for n, s in self._fields.items()
            if s.get("type") in ("string", "integer")
            and "format" not in s
            and (not properties or n in properties)
        ]
        values: dict[str, set[Any]] = {n: set() for n in names}
        with self._core_errors():
            for feature in self.features(_Query(None, None, [])):
                for n in names:
                    v = _property(feature, n)
                    if v is not None and len(values[n]) <= _MAX_DOMAIN_VALUES:
                        values[n].add(v)
        return {n: sorted(v)[:_MAX_DOMAIN_VALUES] for n, v in values.items() if v}, True

    # -- internals --------------------------------------------------------------------
    def _what(self) -> str:
        return f"collection of twin {self.twin_id!r}" if self.twin_id else "this collection"

    def _query(
        self,
        bbox: Sequence[float] | None,
        datetime_: str | None,
        properties: Sequence[tuple[str, str]],
        q: str | None,
        filterq: Any,
    ) -> _Query:
        tests: list[Callable[[Feature], bool]] = []
        unknown = [name for name, _ in properties if name not in self._fields]
        if unknown:
            raise InvalidFeatureQuery(
                f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(repr(u) for u in unknown)}; this collection takes "
                f"{', '.join(p for p in _RESERVED if self.temporal or p != 'datetime')} and "
                f"equality on its properties: {', '.join(self._fields)}"
            )
        for name, raw in properties:
            tests.append(_equality(name, str(raw), self._fields[name]))
        areas = _bbox_areas(bbox) if bbox else None
        if areas is not None:
            tests.append(_intersecting(areas))
        interval = None
        if datetime_ is not None:
            if not self.temporal:
                raise InvalidFeatureQuery(
                    "datetime: this collection has no time; leave datetime out"
                )
            interval = parse_datetime_parameter(str(datetime_))
            tests.append(lambda f: _issued_in(f, interval))
        if q is not None:
            tests.append(_text_matcher(str(q)))
        if filterq is not None:
            tests.append(compile_cql2(filterq, self._fields))
        return _Query(areas, interval, tests)

    def _order(
        self, sortby: Sequence[Mapping[str, str]]
    ) -> list[tuple[Callable[[Feature], Any], bool]]:
        order: list[tuple[Callable[[Feature], Any], bool]] = []
        for item in sortby:
            name = item.get("property", "")
            schema = self._fields.get(name)
            if schema is None:
                raise InvalidFeatureQuery(f"sortby: {name!r} is not a property of this collection")
            kind = _kind(schema)
            if kind in ("object", "array"):
                raise InvalidFeatureQuery(f"sortby: {name!r} is an {kind} and has no order")
            key = _sort_key(name, kind)
            order.append((key, item.get("order") == "-"))
        return order

    @staticmethod
    def _shaped(feature: Feature, select: Sequence[str], skip_geometry: bool) -> Feature:
        if not select and not skip_geometry:
            return feature
        out = dict(feature)
        if select:
            out["properties"] = {k: v for k, v in feature["properties"].items() if k in select}
        if skip_geometry:
            out["geometry"] = None
        return out

    @staticmethod
    @contextmanager
    def _core_errors() -> Iterator[None]:
        """Core's typed errors as pygeoapi's: not found 404, invalid 400, others 503."""
        try:
            yield
        except NotFoundError as exc:
            raise _ItemNotFound(exc.message) from exc
        except InvalidInput as exc:
            raise InvalidFeatureQuery(exc.message) from exc
        except TwinmeshError as exc:
            logger.error("core could not answer a features query: %s", exc.message)
            raise _Unavailable() from exc

    def _twin(self) -> Twin:
        assert self.twin_id is not None
        return self.engine.twin(self.twin_id)


def _sort_key(name: str, kind: str) -> Callable[[Feature], tuple[bool, Any]]:
    """Sort on a property, nulls last (first when the order is reversed)."""

    def key(feature: Feature) -> tuple[bool, Any]:
        value = _typed(_property(feature, name), kind)
        return (value is None, value)

    return key


def _intersecting(areas: Sequence[BaseGeometry]) -> Callable[[Feature], bool]:
    """A test of a feature's geometry against the bbox (shapes cached: many warnings
    share their region's polygon)."""
    cache: dict[int, tuple[Any, bool]] = {}  # the dict is kept so its id stays its own

    def test(feature: Feature) -> bool:
        geometry = feature.get("geometry")
        if geometry is None:
            return False
        cached = cache.get(id(geometry))
        if cached is None:
            geom = shape(geometry)
            cached = cache[id(geometry)] = (geometry, any(geom.intersects(a) for a in areas))
        return cached[1]

    return test


def _issued_in(feature: Feature, interval: tuple[datetime, datetime]) -> bool:
    issued = _typed(feature["properties"].get("issued"), "date")
    if not isinstance(issued, date):
        return False
    start, stop = interval
    return start <= _day_end(issued) and _day_start(issued) <= stop


def _model_version(value: Any) -> Any:
    """The log stores the model version as a string; the feature says it as core's
    ``WarningProperties`` declares it (an integer)."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


class _WarningFeatures(_CoreFeatureProvider):
    """Warnings as features: the payload's declared properties, the region's polygon."""

    temporal = True

    def __init__(self, provider_def: dict[str, Any]) -> None:
        super().__init__(provider_def)
        self.title_field = "region_name"
        self.time_field = "issued"
        self._property_names = [n for n in self._fields if n != "id"]

    def warning_feature(self, event: Event, feature_id: Any, geometry: Any) -> Feature:
        payload = event.payload
        properties: dict[str, Any] = {n: payload.get(n) for n in self._property_names}
        properties["twin_id"] = event.twin
        properties["region_id"] = event.region
        properties["model_version"] = _model_version(payload.get("model_version"))
        properties["seq"] = event.seq
        properties["recorded"] = _as_utc(event.recorded).isoformat().replace("+00:00", "Z")
        return {"type": "Feature", "id": feature_id, "geometry": geometry, "properties": properties}

    @staticmethod
    def region_filter(twin: Twin, query: _Query) -> dict[str, Any]:
        """Geometry of each region of the twin that the query's bbox leaves in."""
        out = {}
        for region in twin.regions:
            if query.areas is not None:
                geom = shape(region.geometry)
                if not any(geom.intersects(a) for a in query.areas):
                    continue
            out[region.id] = region.geometry
        return out

    @staticmethod
    def issued_may_match(event: Event, query: _Query) -> bool:
        if query.interval is None:
            return True
        day = _as_utc(event.time).date()
        return query.interval[0] <= _day_end(day) and _day_start(day) <= query.interval[1]


class WarningLogProvider(_WarningFeatures):
    """``<twin>-warnings``: every warning the twin issued, in log order; the feature id
    is the event's sequence number."""

    def declared_fields(self) -> dict[str, dict[str, Any]]:
        return warning_fields(
            {"type": "integer", "description": "The warning's sequence number in the log."}
        )

    def features(self, query: _Query) -> Iterator[Feature]:
        twin = self._twin()
        regions = self.region_filter(twin, query)
        known = {r.id for r in twin.regions}
        after = 0
        while True:
            page = self.engine.log.replay(
                after, kinds="warning", twin=twin.id, limit=MAX_REPLAY_LIMIT
            )
            for event in page:
                region = event.region or ""
                if region in known and region not in regions:
                    continue  # outside the bbox
                if not self.issued_may_match(event, query):
                    continue
                yield self.warning_feature(event, event.seq, regions.get(region))
            if len(page) < MAX_REPLAY_LIMIT:
                return
            after = page[-1].seq

    def feature(self, identifier: str) -> Feature | None:
        if not identifier.isdigit() or str(int(identifier)) != identifier:
            return None
        seq = int(identifier)
        if not 0 < seq < 2**63:
            return None
        twin = self._twin()
        found = self.engine.log.replay(seq - 1, kinds="warning", twin=twin.id, limit=1)
        if not found or found[0].seq != seq:
            return None
        event = found[0]
        geometry = next((r.geometry for r in twin.regions if r.id == event.region), None)
        return self.warning_feature(event, seq, geometry)


class CurrentWarningsProvider(_WarningFeatures):
    """``current-warnings``: the latest recorded warning of every region of every twin;
    the feature id is ``"<twin>:<region>"``. Regions without a warning have no feature;
    a warning whose region left the twin document is not current."""

    needs_twin = False

    def declared_fields(self) -> dict[str, dict[str, Any]]:
        return warning_fields(
            {"type": "string", "description": "'<twin>:<region>' of the region warned."}
        )

    def features(self, query: _Query) -> Iterator[Feature]:
        for twin_id in self.engine.store.twin_ids():
            yield from self._current(self.engine.twin(twin_id), query)

    def _current(self, twin: Twin, query: _Query, region: str | None = None) -> Iterator[Feature]:
        regions = self.region_filter(twin, query)
        latest = {
            e.region: e
            for e in self.engine.log.warnings(
                twin.id, region=region, latest_per_region=True, limit=MAX_REPLAY_LIMIT
            )
        }
        for r in twin.regions:
            event = latest.get(r.id)
            if event is None or r.id not in regions or not self.issued_may_match(event, query):
                continue
            yield self.warning_feature(
                event, f"{twin.id}{CURRENT_ID_SEPARATOR}{r.id}", regions[r.id]
            )

    def feature(self, identifier: str) -> Feature | None:
        twin_id, sep, region_id = identifier.partition(CURRENT_ID_SEPARATOR)
        if not sep or twin_id not in self.engine.store.twin_ids():
            return None
        twin = self.engine.twin(twin_id)
        if region_id not in {r.id for r in twin.regions}:
            return None
        return next(self._current(twin, _Query(None, None, []), region=region_id), None)


class RegionsProvider(_CoreFeatureProvider):
    """``<twin>-regions``: the twin's regions and their polygons; id = region id."""

    def __init__(self, provider_def: dict[str, Any]) -> None:
        super().__init__(provider_def)
        self.title_field = "name"
        self.time_field = None

    def declared_fields(self) -> dict[str, dict[str, Any]]:
        return _region_fields()

    def features(self, query: _Query) -> Iterator[Feature]:
        twin = self._twin()
        for region in twin.regions:
            properties = region.model_dump(mode="json", exclude={"id", "geometry"})
            yield {
                "type": "Feature",
                "id": region.id,
                "geometry": region.geometry,
                "properties": {"twin_id": twin.id, **properties},
            }

    def feature(self, identifier: str) -> Feature | None:
        return next((f for f in self.features(_Query(None, None, [])) if f["id"] == identifier),
                    None)  # fmt: skip


class GaugesProvider(_CoreFeatureProvider):
    """``<twin>-gauges``: the twin's river gauges as Points; id = gauge id."""

    def __init__(self, provider_def: dict[str, Any]) -> None:
        super().__init__(provider_def)
        self.title_field = "name"
        self.time_field = None

    def declared_fields(self) -> dict[str, dict[str, Any]]:
        return _gauge_fields()

    def features(self, query: _Query) -> Iterator[Feature]:
        twin = self._twin()
        for gauge in twin.gauges:
            yield {
                "type": "Feature",
                "id": gauge.id,
                "geometry": {"type": "Point", "coordinates": [gauge.lon, gauge.lat]},
                "properties": {"twin_id": twin.id, **gauge.model_dump(mode="json", exclude={"id"})},
            }

    def feature(self, identifier: str) -> Feature | None:
        return next((f for f in self.features(_Query(None, None, [])) if f["id"] == identifier),
                    None)  # fmt: skip
