"""CLI commands generated from the capability declarations.

Each capability in core becomes ``twinmesh NAME TWIN [--input ...]``: its options,
their help, defaults and ranges come from the declaration's pydantic fields, and the
values go through the same validation as every other adapter. Nothing is re-typed
here: a capability added to core appears in the CLI by itself.
"""

from __future__ import annotations

import inspect
import json
import time
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
from twinmesh.core.capabilities.hydrology import is_perfect_forecast
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
            if capability.report:
                result = _run_and_keep(engine, twin, capability, inputs)
            else:
                result = engine.run(twin, capability.name, inputs)
            render(result, output=output, fmt=fmt, as_json=as_json)
        finally:
            engine.close()

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__name__ = capability.name
    command.__doc__ = f"{capability.title}: {capability.description}"
    return command


def _run_and_keep(
    engine: Engine, twin: str, capability: Capability, inputs: dict[str, Any]
) -> Result:
    """Run a report capability as a job, here and now, so its result is stored and
    published like any job's (a mesh worker may take it first: then wait for that)."""
    from rich.progress import Progress

    from twinmesh.core.errors import TwinmeshError
    from twinmesh.core.jobs import JobStatus
    from twinmesh.core.worker import Worker
    from twinmesh.stac.results import result_publisher

    job = engine.submit(twin, capability.name, inputs)
    computed: dict[str, Result] = {}

    def keep(engine_: Engine, job_: Any, result: Result, stored: Any) -> dict[str, Any]:
        computed["result"] = result
        return {}

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"{capability.name} {twin}", total=1.0)
        worker = Worker(
            engine,
            publishers=[result_publisher(engine.settings), keep],
            on_progress=lambda fraction, message: bar.update(
                task, completed=fraction, description=f"{capability.name} {twin}: {message}"
            ),
        )
        ran_here = worker.run_job(job.id)
        done = engine.jobs.get(job.id)
        while not done.status.finished:
            bar.update(task, completed=done.progress, description=done.message or "queued")
            time.sleep(0.5)
            done = engine.jobs.get(job.id)
    if done.status is not JobStatus.SUCCESSFUL:
        error = done.error or {}
        raise TwinmeshError(
            f"job {job.id} {done.status.value}: {error.get('message', done.message)}"
        )
    record = engine.jobs.result(job.id)
    if ran_here and "result" in computed:
        result = computed["result"]
    else:
        with engine.store.fs.open(record["url"], "rb") as fh:  # fsspec strips the protocol
            data = json.loads(fh.read())
        result = Result(
            OutputKind.RECORD,
            capability.name,
            twin,
            data,
            model_version=record.get("model_version"),
            forcing_mode=record.get("forcing_mode"),
            inputs=done.inputs,
        )
    console.print(
        f"stored as job {job.id}: STAC item {record.get('stac_item', job.id)} in "
        f"{record.get('stac_collection', twin + '-results')} ({record['url']})"
    )
    return result


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
    if result.kind is OutputKind.RECORD and result.capability == "verify":
        _verify_tables(result.data)
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
    if is_perfect_forecast(result.forcing_mode):
        title = (
            "PERFECT-FORECAST REFERENCE on the observed future forcing, not a forecast: " + title
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


#: Short names of the verified systems in the table (the report explains each).
_SYSTEM_NAMES = {
    "esp": "ESP",
    "persistence": "persistence",
    "perfect_forecast": "perfect-forecast bound",
}


def _score(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _verify_tables(report: dict[str, Any]) -> None:
    """One table per gauged point: each forecast system's contingency and scores."""
    period = report["period"]
    console.print(
        f"[bold]{report['twin_id']}[/]: flood warnings hindcast {period['start']}/"
        f"{period['end']}, every issue day, lead {report['lead_days']} days, "
        f"{report['return_period']}-year level, warning at >= "
        f"{report['alert_probability']:.0%} of members (model version {report['model_version']})"
    )
    for point in report["points"]:
        table = Table(
            title=f"{point['region_id']} at gauge {point['gauge_id']}: {point['events']} "
            f"event days of {point['issue_days']} issue days"
        )
        table.caption = (
            f"event: observed >= {point['observed_threshold_m3s']:.1f} m3/s "
            f"({point['observed_threshold_source']}); model level "
            f"{point['model_threshold_m3s']:.1f} m3/s ({point['model_threshold_source']}); "
            f"BSS reference: climatological event frequency {point['climatology']:.3f} "
            f"({point['climatology_source']})"
        )
        table.add_column("forecast", no_wrap=True)
        for col in ("hits", "misses", "false alarms", "POD", "FAR", "CSI", "BSS"):
            table.add_column(col, justify="right", no_wrap=True, min_width=len(col))
        for name, score in point["systems"].items():
            table.add_row(
                _SYSTEM_NAMES.get(name, name),
                str(score["hits"]),
                str(score["misses"]),
                str(score["false_alarms"]),
                _score(score["pod"]),
                _score(score["far"]),
                _score(score["csi"]),
                _score(score["bss"]),
            )
        console.print(table)
    for name, what in report["systems"].items():
        console.print(f"{_SYSTEM_NAMES.get(name, name)}: {what}")
    reasons: dict[str, list[str]] = {}
    for skipped in report["not_verified"]:
        reasons.setdefault(skipped["reason"], []).append(skipped["region_id"])
    for reason, regions in reasons.items():
        console.print(f"not verified ({', '.join(regions)}): {reason}")
    for note in report.get("notes", []):
        console.print(f"note: {note}")


def add_capability_commands(app: typer.Typer) -> None:
    """One command per declared capability."""
    from twinmesh.core.capabilities import CAPABILITIES

    for capability in CAPABILITIES.values():
        app.command(capability.name, rich_help_panel="Capabilities")(
            _command(capability, render_result)
        )
