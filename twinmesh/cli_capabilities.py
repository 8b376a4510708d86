"""CLI commands generated from the capability declarations.

Each capability in core becomes ``twinmesh NAME TWIN [--input ...]``: its options,
their help, defaults and ranges come from the declaration's pydantic fields, and the
values go through the same validation as every other adapter. Nothing is re-typed
here: a capability added to core appears in the CLI by itself.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic.fields import FieldInfo
from rich.console import Console
from rich.table import Table

from twinmesh.core.capabilities.declaration import Capability, declared_range, field_type
from twinmesh.core.engine import Engine
from twinmesh.core.results import OutputKind, Result

__all__ = ["add_capability_commands", "render_result"]

console = Console()


def _option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _help(info: FieldInfo) -> str:
    parts = [info.description or ""]
    low, high = declared_range(info)
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    unit = extra.get("x-units")
    if low is not None or high is not None:
        parts.append(
            f"Range {low if low is not None else '-inf'}..{high if high is not None else 'inf'}"
        )
    if unit and unit != "1":
        parts.append(f"Units: {unit}.")
    return " ".join(p for p in parts if p)


def _cli_type(info: FieldInfo) -> tuple[Any, Callable[[Any], Any]]:
    """The type typer parses, and how its value becomes the capability's input."""
    kind = field_type(info)
    origin = typing.get_origin(kind)
    if origin is list:
        # Lists are typed comma-separated (bbox 9.5,50.5,9.9,50.9; regions a,b).
        (item,) = typing.get_args(kind)

        def split(text: str | None) -> Any:
            if text is None:
                return None
            parts = [p.strip() for p in text.split(",") if p.strip()]
            return parts if item is str else [_number(p) for p in parts]

        return str | None, split
    if kind is date:
        return str | None, lambda v: v
    if kind in (int, float, str, bool):
        return kind | None, lambda v: v
    # int | str (model_version) and other unions: pass the text, the model decides.
    return str | None, lambda v: int(v) if isinstance(v, str) and v.isdigit() else v


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text  # the declaration's validation names the bad value


def _command(capability: Capability, render: Callable[..., None]) -> Callable[..., None]:
    converters: dict[str, Callable[[Any], Any]] = {}
    params = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        inspect.Parameter(
            "twin",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=Annotated[
                str, typer.Argument(help="Twin id, e.g. fulda (see `twinmesh twins`).")
            ],
        ),
    ]
    for name, info in capability.cli_fields().items():
        cli_type, convert = _cli_type(info)
        converters[name] = convert
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        shown = "" if default is None else f" [default: {_show(default)}]"
        required = " (required)" if info.is_required() else ""
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    cli_type,
                    typer.Option(
                        _option_name(name), help=_help(info) + required + shown, show_default=False
                    ),
                ],
            )
        )
    formats = sorted({f for kind in OutputKind for f in _formats(kind)})
    params += [
        inspect.Parameter(
            "output",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                Path | None,
                typer.Option("--output", "-o", help="Write the result to this file or folder."),
            ],
        ),
        inspect.Parameter(
            "format",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                str | None,
                typer.Option(
                    "--format",
                    help=f"Encoding with --output ({', '.join(formats)}; default by result kind).",
                ),
            ],
        ),
        inspect.Parameter(
            "as_json",
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=Annotated[bool, typer.Option("--json", help="Print the result as JSON.")],
        ),
        inspect.Parameter(
            "submit",
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=Annotated[
                bool,
                typer.Option(
                    "--submit",
                    help="Queue it as a job for `twinmesh worker` and print the job id "
                    "(see `twinmesh jobs`).",
                ),
            ],
        ),
    ]

    def command(ctx: typer.Context, twin: str, **options: Any) -> None:
        output = options.pop("output")
        fmt = options.pop("format")
        as_json = options.pop("as_json")
        submit = options.pop("submit")
        inputs = {k: converters[k](v) for k, v in options.items() if v is not None}
        engine = Engine(ctx.obj)
        try:
            if submit:
                job = engine.submit(twin, capability.name, inputs)
                console.print(f"job {job.id} {job.status.value}: {capability.name} on {twin}")
                return
            result = engine.run(twin, capability.name, inputs)
            render(result, output=output, fmt=fmt, as_json=as_json)
        finally:
            engine.close()

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__name__ = capability.name
    command.__doc__ = f"{capability.title}: {capability.description}"
    return command


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _formats(kind: OutputKind) -> list[str]:
    from twinmesh.core.results import _KIND_FORMATS

    return list(_KIND_FORMATS[kind])


def render_result(result: Result, *, output: Path | None, fmt: str | None, as_json: bool) -> None:
    """Print or write a result as the user asked."""
    if output is not None:
        path = result.write(output, fmt)
        console.print(f"wrote {result.format(fmt).name} to {path}")
        return
    if as_json:
        console.print_json(json.dumps(result.to_json()))
        return
    if result.kind is OutputKind.FEATURES and result.capability == "warnings":
        _warnings_table(result)
        return
    console.print(result.data if result.kind is OutputKind.COVERAGE else result.to_json())
    console.print(
        f"model version {result.model_version}, forcing: {result.forcing_mode}"
        if result.model_version is not None
        else ""
    )


def _warnings_table(result: Result) -> None:
    features = result.data["features"]
    first = features[0]["properties"] if features else None
    title = (
        f"{result.twin_id}: warnings issued {first['issued']} valid "
        f"{first['valid_from']}/{first['valid_to']} (model version {result.model_version})"
        if first
        else f"{result.twin_id}: no region"
    )
    table = Table(title=title)
    table.caption = (
        "2y/5y/20y: share of members above that return level (a level needs 30%); "
        "peak: median member peak (m3/s); SPI: SPI-3 of the last full month"
    )
    table.add_column("region", no_wrap=True)
    for col in ("flood", "2y", "5y", "20y", "peak", "drought", "SPI"):
        table.add_column(
            col, no_wrap=True, justify="left" if col in ("flood", "drought") else "right"
        )
    for feature in features:
        w = feature["properties"]
        p = w["flood_probability"]
        spi = "" if w["spi"] is None else f"{w['spi']:.2f}"
        table.add_row(
            w["region_id"],
            w["flood_level"],
            *(f"{p[k]:.2f}" if k in p else "" for k in ("2", "5", "20")),
            f"{w['peak_discharge_m3s']:.1f}",
            w["drought_level"],
            spi,
        )
    console.print(table)


def add_capability_commands(app: typer.Typer) -> None:
    """One command per declared capability."""
    from twinmesh.core.capabilities import CAPABILITIES

    for capability in CAPABILITIES.values():
        app.command(capability.name, rich_help_panel="Capabilities")(
            _command(capability, render_result)
        )
