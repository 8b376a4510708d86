"""Capabilities are declared once: the JSON Schemas, the openEO process, the CLI options
and the checks all come from the declaration, and agree with it."""

from __future__ import annotations

import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from twinmesh.core.capabilities import CAPABILITIES
from twinmesh.core.capabilities.declaration import declared_range
from twinmesh.core.errors import InvalidParameter
from twinmesh.core.results import OutputKind


@pytest.mark.parametrize("name", sorted(CAPABILITIES))
def test_the_json_schema_states_every_declared_range_and_default(name: str) -> None:
    cap = CAPABILITIES[name]
    schemas = cap.parameter_schemas()
    assert set(schemas) == set(cap.inputs.model_fields)
    for field, info in cap.inputs.model_fields.items():
        schema = schemas[field]
        low, high = declared_range(info)
        if low is not None:
            assert schema["minimum"] == low, field
        if high is not None:
            assert schema["maximum"] == high, field
        assert schema["x-required"] == info.is_required()
        if not info.is_required() and info.default is not None:
            assert schema["default"] == info.default
        assert schema.get("description"), f"{name}.{field} has no description"


def test_declared_ranges_are_those_core_enforces() -> None:
    forecast = CAPABILITIES["forecast"].parameter_schemas()
    assert (forecast["members"]["minimum"], forecast["members"]["maximum"]) == (1, 200)
    assert (forecast["lead_days"]["minimum"], forecast["lead_days"]["maximum"]) == (1, 30)
    assert forecast["lead_days"]["x-units"] == "d"
    factor = CAPABILITIES["simulate"].parameter_schemas()["precipitation_factor"]
    assert (factor["minimum"], factor["maximum"]) == (0.0, 10.0)


@pytest.mark.parametrize("name", sorted(CAPABILITIES))
def test_the_openeo_process_lists_the_twin_and_every_input(name: str) -> None:
    process = CAPABILITIES[name].openeo_process()
    names = [p["name"] for p in process["parameters"]]
    assert names == ["twin", *CAPABILITIES[name].inputs.model_fields]
    for p in process["parameters"][1:]:
        required = CAPABILITIES[name].inputs.model_fields[p["name"]].is_required()
        assert p.get("optional", False) is (not required)
    kind = CAPABILITIES[name].output.kind
    subtype = process["returns"]["schema"].get("subtype")
    assert subtype == {"coverage": "datacube", "features": "geojson"}.get(kind.value)


@pytest.mark.parametrize(
    ("name", "inputs", "fragment"),
    [
        ("forecast", {"members": 0}, "members must be between 1 and 200, got 0"),
        ("forecast", {"lead_days": 31}, "lead_days must be between 1 and 30 d, got 31"),
        ("forecast", {"members": "many"}, "members"),
        ("simulate", {"start": "1985-01-01"}, "end is required"),
        ("simulate", {"start": "x", "end": "1985-02-01"}, "start"),
        (
            "simulate",
            {"start": "1985-01-01", "end": "1985-02-01", "precipitation_factor": 11},
            "precipitation_factor must be between 0.0 and 10.0, got 11",
        ),
        ("warnings", {"bbox": [1, 2, 3]}, "bbox"),
        ("warnings", {"colour": "red"}, "unknown parameter 'colour'"),
        ("subset", {}, "dataset is required"),
    ],
)
def test_out_of_range_input_is_a_typed_error_naming_the_range(
    name: str, inputs: dict, fragment: str
) -> None:
    with pytest.raises(InvalidParameter) as info:
        CAPABILITIES[name].validate(inputs)
    assert fragment in info.value.message


@given(st.integers(min_value=-1000, max_value=1000))
def test_members_are_accepted_exactly_inside_the_declared_range(members: int) -> None:
    cap = CAPABILITIES["forecast"]
    if 1 <= members <= 200:
        assert cap.validate({"members": members}).members == members
    else:
        with pytest.raises(InvalidParameter):
            cap.validate({"members": members})


def test_a_non_object_is_refused() -> None:
    with pytest.raises(InvalidParameter, match="object of named parameters"):
        CAPABILITIES["forecast"].validate([])  # type: ignore[arg-type]


def test_every_capability_has_a_cli_command_with_an_option_per_input() -> None:
    from twinmesh.cli import app

    runner = CliRunner()
    for name, cap in CAPABILITIES.items():
        out = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"}).output
        for field in cap.inputs.model_fields:
            assert "--" + field.replace("_", "-") in out, (name, field)


def test_the_cli_reports_an_out_of_range_value_with_the_declared_range(tmp_path) -> None:
    from twinmesh.cli import app

    runner = CliRunner()
    # Validation happens before the twin is read: an empty data dir is enough.
    result = runner.invoke(
        app, ["--data-dir", str(tmp_path), "forecast", "fulda", "--members", "500"]
    )
    assert isinstance(result.exception, InvalidParameter)
    assert "members must be between 1 and 200, got 500" in result.exception.message


def test_output_kinds_are_declared() -> None:
    kinds = {name: cap.output.kind for name, cap in CAPABILITIES.items()}
    assert kinds == {
        "simulate": OutputKind.COVERAGE,
        "forecast": OutputKind.COVERAGE,
        "warnings": OutputKind.FEATURES,
        "subset": OutputKind.COVERAGE,
        "verify": OutputKind.RECORD,
    }
    assert typing.get_type_hints(CAPABILITIES["warnings"].output.properties)  # typed props
