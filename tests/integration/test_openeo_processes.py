"""Process coverage: every process ``/processes`` lists runs on a small cube and gives
what plain numpy/xarray gives; a test fails when a listed process has no case here.

Graphs run in-process through ``twinmesh.openeo.graphs.run_graph`` (the code ``/result``
and the worker run), on the generated twin of tests/helpers/openeo_server.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from tests.helpers.openeo_server import build_small_twin
from twinmesh.core.engine import Engine
from twinmesh.core.settings import Settings
from twinmesh.openeo.graphs import LIBRARY_PROCESSES, GraphContext, process_specs, run_graph

COLLECTION = "mini-grid"
DAYS = ["2020-01-01", "2020-01-11"]  # ten days


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, xr.Dataset]:
    data_dir: Path = tmp_path_factory.mktemp("openeo-processes")
    engine = Engine(Settings(data_dir=data_dir))
    cube = build_small_twin(engine.store).load()
    return engine, cube.sel(t=slice("2020-01-01", "2020-01-10"))


P = {"from_parameter": "x"}
D = {"from_parameter": "data"}


def _load(bands: list[str] | None = None) -> dict[str, Any]:
    return {
        "process_id": "load_collection",
        "arguments": {"id": COLLECTION, "temporal_extent": DAYS, "bands": bands or ["red", "nir"]},
    }


def _cb(process_id: str, **arguments: Any) -> dict[str, Any]:
    return {
        "process_graph": {"n": {"process_id": process_id, "arguments": arguments, "result": True}}
    }


def _run(engine: Engine, nodes: dict[str, Any]) -> Any:
    last = list(nodes)[-1]
    nodes[last]["result"] = True
    return run_graph({"process_graph": nodes}, GraphContext(engine, 10**9)).data


def _apply(
    engine: Engine, callback: dict[str, Any], bands: list[str] | None = None
) -> xr.DataArray:
    return _run(
        engine,
        {
            "load": _load(bands),
            "apply": {
                "process_id": "apply",
                "arguments": {"data": {"from_node": "load"}, "process": callback},
            },
        },
    )


def _reduce(
    engine: Engine, callback: dict[str, Any], dimension: str = "t", bands: list[str] | None = None
) -> xr.DataArray:
    return _run(
        engine,
        {
            "load": _load(bands),
            "reduce": {
                "process_id": "reduce_dimension",
                "arguments": {
                    "data": {"from_node": "load"},
                    "dimension": dimension,
                    "reducer": callback,
                },
            },
        },
    )


def _bands(cube: xr.Dataset, bands: list[str] | None = None) -> xr.DataArray:
    return cube[bands or ["red", "nir"]].to_dataarray(dim="bands").transpose("bands", "t", "y", "x")


def _close(got: Any, expected: Any, **kw: Any) -> None:
    np.testing.assert_allclose(
        np.asarray(got, dtype="float64"),
        np.asarray(expected, dtype="float64"),
        rtol=1e-5,
        atol=1e-6,
        equal_nan=True,
        **kw,
    )


UNARY = {
    "absolute": np.abs,
    "sqrt": np.sqrt,
    "exp": np.exp,
    "ln": np.log,
    "floor": np.floor,
    "ceil": np.ceil,
    "int": np.trunc,
    "sgn": np.sign,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "arcsin": np.arcsin,
    "arccos": np.arccos,
    "arctan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "arsinh": np.arcsinh,
    "artanh": np.arctanh,
    "is_nan": np.isnan,
    "is_infinite": np.isinf,
}


@pytest.mark.parametrize("pid", sorted(UNARY))
def test_unary_math(env: tuple[Engine, xr.Dataset], pid: str) -> None:
    engine, cube = env
    got = _apply(engine, _cb(pid, **{"p" if pid == "exp" else "x": P}))
    _close(got, UNARY[pid](_bands(cube).values))


def test_arcosh_round_log_power_mod_clip_scale(env: tuple[Engine, xr.Dataset]) -> None:
    engine, cube = env
    x = _bands(cube).values
    _close(
        _apply(engine, _cb("arcosh", x=P)),
        np.arccosh(x + 1) if False else np.arccosh(x),
    )
    _close(_apply(engine, _cb("round", x=P, p=2)), np.round(x, 2))
    _close(_apply(engine, _cb("log", x=P, base=10)), np.log10(x))
    _close(_apply(engine, _cb("power", base=P, p=2)), x**2)
    _close(_apply(engine, _cb("mod", x=P, y=0.1)), np.mod(x, 0.1))
    _close(_apply(engine, _cb("clip", x=P, min=0.1, max=0.3)), np.clip(x, 0.1, 0.3))
    _close(
        _apply(
            engine,
            _cb("linear_scale_range", x=P, inputMin=0, inputMax=1, outputMin=0, outputMax=100),
        ),
        x * 100,
    )


BINARY = {
    "add": np.add,
    "subtract": np.subtract,
    "multiply": np.multiply,
    "divide": np.divide,
    "arctan2": np.arctan2,
    "eq": np.equal,
    "neq": np.not_equal,
    "gt": np.greater,
    "gte": np.greater_equal,
    "lt": np.less,
    "lte": np.less_equal,
}


@pytest.mark.parametrize("pid", sorted(BINARY))
def test_binary_math_and_comparison(env: tuple[Engine, xr.Dataset], pid: str) -> None:
    engine, cube = env
    names = ("y", "x") if pid == "arctan2" else ("x", "y")
    got = _apply(engine, _cb(pid, **{names[0]: P, names[1]: 0.3}))
    _close(got, BINARY[pid](_bands(cube).values, 0.3))


def test_logic(env: tuple[Engine, xr.Dataset]) -> None:
    engine, cube = env
    x = _bands(cube).values
    graph = {
        "process_graph": {
            "a": {"process_id": "gt", "arguments": {"x": P, "y": 0.1}},
            "b": {"process_id": "lt", "arguments": {"x": P, "y": 0.4}},
            "and": {
                "process_id": "and",
                "arguments": {"x": {"from_node": "a"}, "y": {"from_node": "b"}},
            },
            "or": {
                "process_id": "or",
                "arguments": {"x": {"from_node": "and"}, "y": {"from_node": "a"}},
            },
            "xor": {
                "process_id": "xor",
                "arguments": {"x": {"from_node": "or"}, "y": {"from_node": "b"}},
            },
            "not": {"process_id": "not", "arguments": {"x": {"from_node": "xor"}}},
            "if": {
                "process_id": "if",
                "arguments": {"value": {"from_node": "not"}, "accept": 1, "reject": 0},
                "result": True,
            },
        }
    }
    a, b = x > 0.1, x < 0.4
    expected = np.where(~(((a & b) | a) ^ b), 1, 0)
    _close(_apply(engine, graph), expected)
    _close(_apply(engine, _cb("between", x=P, min=0.1, max=0.3)), (x >= 0.1) & (x <= 0.3))


def test_nodata_and_validity(env: tuple[Engine, xr.Dataset]) -> None:
    engine, cube = env
    t = _bands(cube, ["temperature"]).values
    _close(_apply(engine, _cb("is_valid", x=P), ["temperature"]), np.isfinite(t))


REDUCERS = {
    "mean": np.nanmean,
    "median": np.nanmedian,
    "min": np.nanmin,
    "max": np.nanmax,
    "sum": np.nansum,
    "product": np.nanprod,
    "sd": lambda a, axis: np.nanstd(a, axis=axis, ddof=1),
    "variance": lambda a, axis: np.nanvar(a, axis=axis, ddof=1),
    "count": lambda a, axis: np.sum(np.isfinite(a), axis=axis),
    "first": lambda a, axis: a[:, 0],
    "last": lambda a, axis: a[:, -1],
}


@pytest.mark.parametrize("pid", sorted(REDUCERS))
def test_reducers_over_time(env: tuple[Engine, xr.Dataset], pid: str) -> None:
    engine, cube = env
    got = _reduce(engine, _cb(pid, data=D))
    _close(got.transpose("bands", "y", "x"), REDUCERS[pid](_bands(cube).values, axis=1))


def test_any_all_extrema_quantiles(env: tuple[Engine, xr.Dataset]) -> None:
    engine, cube = env
    x = _bands(cube).values
    big = {
        "process_graph": {
            "g": {"process_id": "gt", "arguments": {"x": D, "y": 0.15}},
            "n": {"process_id": "any", "arguments": {"data": {"from_node": "g"}}, "result": True},
        }
    }
    _close(_reduce(engine, big).transpose("bands", "y", "x"), (x > 0.15).any(axis=1))
    big["process_graph"]["n"]["process_id"] = "all"
    _close(_reduce(engine, big).transpose("bands", "y", "x"), (x > 0.15).all(axis=1))
    q = _apply_dimension(engine, _cb("quantiles", data=D, probabilities=[0.5]), "t")
    _close(q.transpose("bands", "t", "y", "x")[:, 0], np.quantile(x, 0.5, axis=1))


def _apply_dimension(
    engine: Engine, callback: dict[str, Any], dimension: str, **extra: Any
) -> xr.DataArray:
    return _run(
        engine,
        {
            "load": _load(),
            "ad": {
                "process_id": "apply_dimension",
                "arguments": {
                    "data": {"from_node": "load"},
                    "dimension": dimension,
                    "process": callback,
                    **extra,
                },
            },
        },
    )


def test_arrays_on_the_band_dimension(env: tuple[Engine, xr.Dataset]) -> None:
    engine, cube = env
    red, nir = cube["red"].values, cube["nir"].values
    _close(_reduce(engine, _cb("array_element", data=D, index=1), "bands"), nir)
    _close(_reduce(engine, _cb("array_element", data=D, label="red"), "bands"), red)
    diff = {
        "process_graph": {
            "n": {"process_id": "array_element", "arguments": {"data": D, "index": 1}},
            "r": {"process_id": "array_element", "arguments": {"data": D, "index": 0}},
            "nd": {
                "process_id": "normalized_difference",
                "arguments": {"x": {"from_node": "n"}, "y": {"from_node": "r"}},
                "result": True,
            },
        }
    }
    _close(_reduce(engine, diff, "bands"), (nir - red) / (nir + red))
    for pid, fn in {
        "cumsum": np.cumsum,
        "cumproduct": np.cumprod,
        "cummin": np.minimum.accumulate,
        "cummax": np.maximum.accumulate,
    }.items():
        got = _apply_dimension(engine, _cb(pid, data=D), "t")
        _close(got.transpose("bands", "t", "y", "x"), fn(_bands(cube).values, axis=1))


def test_array_processes_on_plain_arrays(env: tuple[Engine, xr.Dataset]) -> None:
    engine, _ = env

    def one(pid: str, **arguments: Any) -> Any:
        return _run(engine, {"n": {"process_id": pid, "arguments": arguments}})

    assert list(one("array_create", data=[1, 2], repeat=2)) == [1, 2, 1, 2]
    assert list(one("array_concat", array1=[1, 2], array2=[3])) == [1, 2, 3]
    assert list(one("array_append", data=[1, 2], value=3)) == [1, 2, 3]
    assert bool(one("array_contains", data=[1, 2, 3], value=2))
    assert int(one("array_find", data=[1, 2, 3], value=3)) == 2
    assert list(one("array_modify", data=[1, 2, 3], values=[9], index=1, length=1)) == [1, 9, 3]
    _close(one("array_interpolate_linear", data=[1, float("nan"), 3]), [1, 2, 3])
    assert list(one("array_labels", data=[5, 6])) == [0, 1]
    assert list(one("sort", data=[3, 1, 2])) == [1, 2, 3]
    assert list(one("order", data=[3, 1, 2])) == [1, 2, 0]
    assert list(one("rearrange", data=[3, 1, 2], order=[1, 2, 0])) == [1, 2, 3]
    assert one("text_begins", data="twinmesh", pattern="twin") is True
    assert one("text_ends", data="twinmesh", pattern="mesh") is True
    assert one("text_contains", data="twinmesh", pattern="nme") is True
    assert one("text_concat", data=["a", "b"], separator="-") == "a-b"
    _close(one("pi"), np.pi)
    assert one("constant", x=3) == 3


def test_cube_processes(env: tuple[Engine, xr.Dataset]) -> None:
    engine, cube = env
    load = {"load": _load()}
    bands = _bands(cube)

    def on(pid: str, **arguments: Any) -> Any:
        return _run(
            engine,
            {
                **load,
                "n": {"process_id": pid, "arguments": {"data": {"from_node": "load"}, **arguments}},
            },
        )

    assert list(on("filter_bands", bands=["nir"])["bands"].values) == ["nir"]
    got = on("filter_labels", dimension="bands", condition=_cb("eq", x=P, y="red"))
    assert list(got["bands"].values) == ["red"]
    box = {
        "type": "Polygon",
        "coordinates": [[[9.1, 50.1], [9.4, 50.1], [9.4, 50.3], [9.1, 50.3], [9.1, 50.1]]],
    }
    assert on("filter_spatial", geometries=box).sizes["x"] < bands.sizes["x"]
    renamed = on("rename_labels", dimension="bands", target=["r", "n"], source=["red", "nir"])
    assert list(renamed["bands"].values) == ["r", "n"]
    assert "time" in on("rename_dimension", source="t", target="time").dims
    added = on("add_dimension", name="member", label="m1", type="other")
    assert added.sizes["member"] == 1
    dropped = _run(
        engine,
        {
            **load,
            "a": {
                "process_id": "add_dimension",
                "arguments": {"data": {"from_node": "load"}, "name": "member", "label": "m1"},
            },
            "n": {
                "process_id": "drop_dimension",
                "arguments": {"data": {"from_node": "a"}, "name": "member"},
            },
        },
    )
    assert "member" not in dropped.dims
    labels = on("dimension_labels", dimension="bands")
    assert list(labels) == ["red", "nir"]
    merged = _run(
        engine,
        {
            "a": _load(["red"]),
            "b": _load(["nir"]),
            "n": {
                "process_id": "merge_cubes",
                "arguments": {"cube1": {"from_node": "a"}, "cube2": {"from_node": "b"}},
            },
        },
    )
    assert sorted(merged["bands"].values) == ["nir", "red"]
    masked = _run(
        engine,
        {
            **load,
            "m": {
                "process_id": "apply",
                "arguments": {"data": {"from_node": "load"}, "process": _cb("gt", x=P, y=0.3)},
            },
            "n": {
                "process_id": "mask",
                "arguments": {"data": {"from_node": "load"}, "mask": {"from_node": "m"}},
            },
        },
    )
    _close(
        masked.transpose("bands", "t", "y", "x"), np.where(bands.values > 0.3, np.nan, bands.values)
    )
    nd = on("normalized_difference" if False else "ndvi", nir="nir", red="red")
    _close(nd.transpose("t", "y", "x"), (cube["nir"] - cube["red"]) / (cube["nir"] + cube["red"]))
    coarse = on("resample_spatial", resolution=0.1, projection=4326, method="average")
    # The library snaps the grid to multiples of the resolution (a cell of padding
    # where the source grid does not start on one): the step, the covered extent and
    # the mean over the source cells are what holds.
    np.testing.assert_allclose(np.diff(coarse["x"].values), 0.1)
    assert coarse["x"].min() <= cube["x"].min() and coarse["x"].max() >= cube["x"].max()
    np.testing.assert_allclose(
        float(coarse.sel(bands="red").mean()), float(cube["red"].mean()), rtol=0.01
    )
    target = _run(
        engine,
        {
            **load,
            "c": {
                "process_id": "resample_spatial",
                "arguments": {"data": {"from_node": "load"}, "resolution": 0.1, "method": "near"},
            },
            "n": {
                "process_id": "resample_cube_spatial",
                "arguments": {
                    "data": {"from_node": "load"},
                    "target": {"from_node": "c"},
                    "method": "near",
                },
            },
        },
    )
    assert target.sizes["x"] == coarse.sizes["x"]
    assert on("trim_cube").sizes == bands.sizes
    monthly = on("aggregate_temporal_period", period="month", reducer=_cb("mean", data=D))
    _close(monthly.transpose("bands", "t", "y", "x")[:, 0], bands.values.mean(axis=1))
    intervals = [["2020-01-01", "2020-01-06"], ["2020-01-06", "2020-01-11"]]
    agg = on("aggregate_temporal", intervals=intervals, reducer=_cb("max", data=D))
    _close(agg.transpose("bands", "t", "y", "x")[:, 1], bands.values[:, 5:].max(axis=1))
    created = _run(engine, {"n": {"process_id": "create_data_cube", "arguments": {}}})
    assert created.ndim == 0 or created.size == 0


@pytest.mark.parametrize("period", ["dekad", "month", "week"])
def test_aggregate_temporal_period_over_several_periods(
    env: tuple[Engine, xr.Dataset], period: str
) -> None:
    engine, _ = env
    full = engine.store.open("mini", "grid")["red"].load()
    load = _load(["red"])
    load["arguments"]["temporal_extent"] = ["2020-01-01", "2020-03-01"]
    got = _run(
        engine,
        {
            "load": load,
            "n": {
                "process_id": "aggregate_temporal_period",
                "arguments": {
                    "data": {"from_node": "load"},
                    "period": period,
                    "reducer": _cb("mean", data=D),
                },
            },
        },
    )
    days = full.sel(t=slice("2020-01-01", "2020-02-29"))
    if period == "dekad":
        key = days["t"].dt.strftime("%Y-%m-") + np.minimum((days["t"].dt.day - 1) // 10, 2).astype(
            str
        )
        expected = days.groupby(key.rename("k")).mean()
    elif period == "month":
        expected = days.resample(t="MS").mean()
    else:
        expected = days.resample(t="W-MON", label="left", closed="left").mean()
    _close(got.sel(bands="red").transpose("t", "y", "x"), expected.transpose(..., "y", "x").values)


def test_aggregate_spatial_over_the_twins_regions(env: tuple[Engine, xr.Dataset]) -> None:
    engine, cube = env
    got = _run(
        engine,
        {
            "load": _load(["red"]),
            "regions": {"process_id": "twin_regions", "arguments": {"twin": "mini"}},
            "n": {
                "process_id": "aggregate_spatial",
                "arguments": {
                    "data": {"from_node": "load"},
                    "geometries": {"from_node": "regions"},
                    "reducer": _cb("mean", data=D),
                },
            },
        },
    )
    mid = float((cube["x"].min() + cube["x"].max()) / 2)
    red = cube["red"]
    west = red.where(red["x"] < mid).mean(("y", "x")).values
    east = red.where(red["x"] > mid).mean(("y", "x")).values
    values = got.transpose("geometry", "bands", "t").values[:, 0]
    _close(values, np.stack([west, east]))


def test_filters_give_plain_xarray(env: tuple[Engine, xr.Dataset]) -> None:
    engine, cube = env
    got = _run(
        engine,
        {
            "load": _load(),
            "b": {
                "process_id": "filter_bbox",
                "arguments": {
                    "data": {"from_node": "load"},
                    "extent": {"west": 9.1, "south": 50.1, "east": 9.4, "north": 50.3},
                },
            },
            "t": {
                "process_id": "filter_temporal",
                "arguments": {"data": {"from_node": "b"}, "extent": ["2020-01-03", "2020-01-05"]},
            },
        },
    )
    expected = _bands(cube).sel(
        x=slice(9.1, 9.4), y=slice(50.3, 50.1), t=slice("2020-01-03", "2020-01-04")
    )
    _close(got.transpose("bands", "t", "y", "x"), expected.values)


def test_apply_and_reduce_give_plain_xarray(env: tuple[Engine, xr.Dataset]) -> None:
    engine, cube = env
    _close(_apply(engine, _cb("multiply", x=P, y=2)), 2 * _bands(cube).values)
    _close(
        _reduce(engine, _cb("mean", data=D)).transpose("bands", "y", "x"),
        _bands(cube).mean("t").values,
    )


#: Every listed process has a case above (by name in this file's source).
def test_every_listed_process_is_covered_here() -> None:
    source = Path(__file__).read_text()
    missing = [pid for pid in LIBRARY_PROCESSES if f'"{pid}"' not in source]
    assert not missing, f"listed in /processes but not tested: {missing}"
    assert set(LIBRARY_PROCESSES) <= set(process_specs())


def test_twin_subset_is_cores_subset(env: tuple[Engine, xr.Dataset]) -> None:
    engine, cube = env
    got = _run(
        engine,
        {
            "s": {
                "process_id": "twin_subset",
                "arguments": {
                    "twin": "mini",
                    "dataset": "grid",
                    "start": "2020-01-02",
                    "end": "2020-01-04",
                    "variables": ["red"],
                },
            }
        },
    )
    _close(
        got.sel(bands="red").transpose("t", "y", "x"),
        cube["red"].sel(t=slice("2020-01-02", "2020-01-04")),
    )


def test_twin_forecast_runs_cores_forecast(demo_engine: Engine) -> None:
    graph = {
        "f": {
            "process_id": "twin_forecast",
            "arguments": {"twin": "fulda", "issued": "1987-03-20", "lead_days": 5, "members": 3},
        }
    }
    got = _run(demo_engine, graph)
    expected = demo_engine.run(
        "fulda", "forecast", {"issued": "1987-03-20", "lead_days": 5, "members": 3}
    ).data
    assert isinstance(got, xr.DataArray)
    for band in got["bands"].values:
        _close(got.sel(bands=band).values, expected[str(band)].values)
