"""The ``twinmesh`` command: build the demo twin, serve the interfaces, run the mesh."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from twinmesh.cli_capabilities import add_capability_commands
from twinmesh.core.errors import TwinmeshError
from twinmesh.core.settings import Settings, load_settings
from twinmesh.core.store import DatacubeStore
from twinmesh.federation.cli import federation_app

console = Console()
err = Console(stderr=True)

app = typer.Typer(
    name="twinmesh",
    help=(
        "twinmesh, a federated Digital Twin Engine.\n\n"
        "Start here:  twinmesh up   (builds the demo twin on first run, then serves the mesh).\n\n"
        "Settings come from TWINMESH_* environment variables (nested with __, e.g. "
        "TWINMESH_STAC__PORT=9000) or a YAML file (--config, or twinmesh.yaml in the "
        "working directory). `twinmesh config` prints what is in force."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
demo_app = typer.Typer(
    help="The demo twins: Fulda (DE) and the Delaware River Basin (US), flood and drought "
    "early warning built from data inside the installed wheels.",
    no_args_is_help=True,
)
jobs_app = typer.Typer(
    help="Jobs: capability requests run by `twinmesh worker` (submit one with "
    "`twinmesh CAPABILITY TWIN --submit`).",
    no_args_is_help=True,
)
models_app = typer.Typer(
    help="The model registry: versions of each twin's models, approve, roll back.",
    no_args_is_help=True,
)
events_app = typer.Typer(
    help="The log of warnings, observations and job changes: replay, follow, export.",
    no_args_is_help=True,
)
serve_app = typer.Typer(
    help="Serve one interface in the foreground (`twinmesh up` serves all).", no_args_is_help=True
)
catalog_app = typer.Typer(help="The STAC catalogue of the store's datacubes.", no_args_is_help=True)
app.add_typer(demo_app, name="demo")
app.add_typer(serve_app, name="serve")
app.add_typer(catalog_app, name="catalog")
app.add_typer(jobs_app, name="jobs")
app.add_typer(models_app, name="models")
app.add_typer(events_app, name="events")
app.add_typer(federation_app, name="federation")


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def _store(settings: Settings) -> DatacubeStore:
    return DatacubeStore(settings.resolved_store_url, settings.storage_options)


@app.callback()
def main_callback(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML settings file (default: ./twinmesh.yaml)."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Working directory (default: ./.twinmesh).")
    ] = None,
) -> None:
    if config is not None:
        if not config.is_file():
            raise typer.BadParameter(f"no such file: {config}", param_hint="--config")
        os.environ["TWINMESH_CONFIG"] = str(config)
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    try:
        ctx.obj = load_settings(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            err.print(f"[red]invalid setting[/] {where}: {error['msg']}")
        err.print("Settings come from TWINMESH_* variables and the YAML file; see `--help`.")
        raise typer.Exit(2) from None


@app.command("config")
def show_config(ctx: typer.Context) -> None:
    """Print the settings in force (after env vars and the YAML file)."""
    console.print_json(_settings(ctx).model_dump_json())


# -- demo ------------------------------------------------------------------------------
def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _progress_reporter(progress: Progress) -> Callable[[str, int, int], None]:
    """A build's progress callback drawing one bar per step."""
    tasks: dict[str, Any] = {}

    def report(step: str, done: int, total: int) -> None:
        if step not in tasks:
            tasks[step] = progress.add_task(step, total=total)
        progress.update(tasks[step], completed=done, total=total)

    return report


def init_demo(
    settings: Settings,
    *,
    force: bool = False,
    repetitions: int | None = None,
    twins: list[str] | None = None,
) -> list[str]:
    """Build the demo twins and the catalogue unless they are current; return those built."""
    from twinmesh.core.twins import twin_builders

    store = _store(settings)
    reps = repetitions or settings.calibration_repetitions
    builders = twin_builders()
    built = []
    for twin_id in twins or list(builders):
        demo = builders[twin_id].builder
        if force or not demo.is_current(store, settings.demo_seed, reps):
            console.print(f"Building the demo twin [bold]{demo.id}[/] ({demo.summary})")
            with _progress() as progress:
                twin = demo.build_into(
                    store,
                    seed=settings.demo_seed,
                    repetitions=reps,
                    progress=_progress_reporter(progress),
                )
            built.append(demo.id)
        else:
            twin = store.read_twin(demo.id)
            console.print(f"Demo twin [bold]{demo.id}[/] is up to date.")
        _print_skill(twin)
    from twinmesh.core.engine import Engine
    from twinmesh.stac.results import publish_catalog

    engine = Engine(settings, store=store)
    try:
        for twin_id in built:
            # A rebuilt twin's new model becomes the current version (the old one stays
            # in the registry: `twinmesh models rollback` brings it back).
            adopted = engine.models.adopt_from_twin(
                store.read_twin(twin_id), reason="rebuilt by `twinmesh demo init`"
            )
            if adopted is not None and adopted.version > 1:
                console.print(
                    f"{twin_id}: model version {adopted.version} ({adopted.kind}) is now current"
                )
        n = publish_catalog(settings, engine)
    finally:
        engine.close()
    console.print(f"Catalogue: {n} collections, valid, at {settings.catalog_dir}")
    return built


def _print_skill(twin: Any) -> None:
    model = twin.model()
    table = Table(title=f"{twin.id}: {model.kind} skill (stored in the model's metadata)")
    for col in ("period", "", "KGE", "NSE"):
        table.add_column(col)
    for name in ("calibration", "validation"):
        s = model.skill[name]
        label = name if "aggregate" not in s else f"{name} ({s['aggregate']})"
        table.add_row(label, s["period"], f"{s['kge']:.3f}", f"{s['nse']:.3f}")
    for region, s in model.skill.get("regions", {}).items():
        v = s["validation"]
        table.add_row(f"  {region}", "validation", f"{v['kge']:.3f}", f"{v['nse']:.3f}")
    console.print(table)
    if not model.region_parameters:
        params = ", ".join(f"{k}={v:.3f}" for k, v in model.parameters.items())
        console.print(f"parameters: {params}")


@demo_app.command("init")
def demo_init(
    ctx: typer.Context,
    twin: Annotated[
        list[str] | None,
        typer.Option(
            "--twin", metavar="TWIN", help="Only this demo twin (repeatable): fulda, delaware."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if current.")] = False,
    repetitions: Annotated[
        int | None,
        typer.Option(
            help="SCE-UA model runs per calibration (default from settings: 3000).", min=100
        ),
    ] = None,
) -> None:
    """Build the demo twins (Fulda, Delaware): forcing grid, observed discharge, calibrated
    GR4J, reanalysis, return levels, SPI-3 and the STAC catalogue. Idempotent: a second
    run does nothing."""
    from twinmesh.core.twins import twin_builders

    builders = twin_builders()
    for name in twin or []:
        if name not in builders:
            raise typer.BadParameter(
                f"no registered twin {name!r}; choose from {', '.join(builders)}",
                param_hint="--twin",
            )
    init_demo(_settings(ctx), force=force, repetitions=repetitions, twins=twin)


# -- capabilities (quick looks from the terminal) -------------------------------------
@app.command("twins")
def list_twins(ctx: typer.Context) -> None:
    """List the twins in the store with their regions, datasets and capabilities."""
    store = _store(_settings(ctx))
    ids = store.twin_ids()
    if not ids:
        err.print("No twins yet: run `twinmesh demo init`.")
        raise typer.Exit(1)
    from twinmesh.core.twins import twin_builders

    builders = twin_builders()
    for tid in ids:
        twin = store.read_twin(tid)
        builder = builders.get(tid)
        source = f"from {builder.source}" if builder else "registered in the store"
        console.print(f"[bold]{twin.id}[/]  {twin.title}  ({source})")
        console.print(
            f"  extent {list(twin.bbox)}  record {twin.time_extent[0]}/{twin.time_extent[1]}"
        )
        console.print(f"  regions: {', '.join(r.id for r in twin.regions)}")
        console.print(f"  datasets: {', '.join(d.id for d in twin.datasets)}")
        console.print(f"  capabilities: {', '.join(twin.capabilities)}")


add_capability_commands(app)


@app.command("capabilities")
def list_capabilities(
    name: Annotated[str | None, typer.Argument(help="One capability: print its schemas.")] = None,
    openeo: Annotated[
        bool, typer.Option("--openeo", help="Print the openEO process description instead.")
    ] = False,
) -> None:
    """The capabilities core declares: inputs (types, ranges, units), output kind.

    With a NAME, its JSON Schemas (inputs and output) as OGC API - Processes and the
    other adapters publish them."""
    from twinmesh.core.capabilities import CAPABILITIES

    if name is None:
        for cap in CAPABILITIES.values():
            fields = ", ".join(cap.inputs.model_fields)
            console.print(f"[bold]{cap.name}[/] ({cap.output.kind.value})  {cap.title}")
            console.print(f"  inputs: {fields}")
        return
    if name not in CAPABILITIES:
        raise typer.BadParameter(f"no capability {name!r}; choose from {', '.join(CAPABILITIES)}")
    cap = CAPABILITIES[name]
    doc = (
        cap.openeo_process()
        if openeo
        else {"inputs": cap.input_schema(), "output": cap.output_schema()}
    )
    console.print_json(json.dumps(doc))


# -- jobs --------------------------------------------------------------------------------
def _engine(ctx: typer.Context) -> Any:
    from twinmesh.core.engine import Engine

    return Engine(_settings(ctx))


@app.command("worker")
def worker(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="Run the queued jobs, then exit (no waiting).")
    ] = False,
) -> None:
    """Run queued jobs until Ctrl-C (`twinmesh up` starts settings.jobs.workers of these).

    Each job is claimed with a lease; a job whose worker died is taken over by another
    worker when its lease expires (settings.jobs.lease_seconds). Results go to the
    store and the twin's STAC results collection."""
    import logging
    import threading

    from twinmesh.core.worker import Worker
    from twinmesh.stac.results import result_publisher

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = _settings(ctx)
    engine = _engine(ctx)
    w = Worker(engine, publishers=[result_publisher(settings)])
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    console.print(f"worker {w.worker_id} on {engine.db}")
    if once:
        while w.run_once():
            pass
        return
    w.run_forever(stop)


def _job_table(jobs: list[Any]) -> Table:
    table = Table()
    for col in ("id", "twin", "capability", "status", "progress", "created", "message"):
        table.add_column(col, no_wrap=col in ("id", "status"))
    for j in jobs:
        table.add_row(
            j.id,
            j.twin,
            j.capability,
            j.status.value,
            f"{j.progress:.0%}",
            f"{j.created:%Y-%m-%d %H:%M:%S}",
            (j.message or "")[:60],
        )
    return table


@jobs_app.command("list")
def jobs_list(
    ctx: typer.Context,
    twin: Annotated[str | None, typer.Option(help="Only this twin's jobs.")] = None,
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many.")] = 20,
) -> None:
    """The newest jobs."""
    console.print(_job_table(_engine(ctx).jobs.list(twin=twin, status=status, limit=limit)))


@jobs_app.command("show")
def jobs_show(ctx: typer.Context, job_id: Annotated[str, typer.Argument()]) -> None:
    """One job as JSON: inputs, status, progress, error, result location, model version."""
    console.print_json(json.dumps(_engine(ctx).jobs.get(job_id).to_dict(), default=str))


@jobs_app.command("wait")
def jobs_wait(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument()],
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600,
) -> None:
    """Wait until the job has finished, showing its progress; exit 1 unless successful."""
    engine = _engine(ctx)
    deadline = time.monotonic() + timeout
    with _progress() as progress:
        task = progress.add_task(job_id[:8], total=100)
        while True:
            job = engine.jobs.get(job_id)
            progress.update(task, completed=int(job.progress * 100))
            if job.status.finished or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    detail = f": {job.message}" if job.message and job.message != job.status.value else ""
    console.print(f"job {job.id} {job.status.value}{detail}")
    if job.status.value != "successful":
        raise typer.Exit(1)


@jobs_app.command("cancel")
def jobs_cancel(ctx: typer.Context, job_id: Annotated[str, typer.Argument()]) -> None:
    """Dismiss a job: a queued one never runs, a running one stops at its next step."""
    job = _engine(ctx).jobs.cancel(job_id)
    console.print(f"job {job.id} {job.status.value}")


# -- models ------------------------------------------------------------------------------
@models_app.command("list")
def models_list(ctx: typer.Context, twin: Annotated[str, typer.Argument()]) -> None:
    """Every version of the twin's models; * marks current."""
    engine = _engine(ctx)
    engine.model(engine.twin(twin))  # registers the twin's own models on first use
    current = engine.models.current_version(twin)
    table = Table(title=f"{twin}: model versions")
    for col in ("", "version", "kind", "created", "approved", "validation KGE", "method"):
        table.add_column(col)
    for m in engine.models.versions(twin):
        kge = m.skill.validation.kge if m.skill.validation else None
        table.add_row(
            "*" if m.version == current else "",
            str(m.version),
            m.kind,
            f"{m.created:%Y-%m-%d %H:%M}",
            "yes" if m.approved else "no",
            "" if kge is None else f"{kge:.3f}",
            m.provenance.method,
        )
    console.print(table)


@models_app.command("approve")
def models_approve(
    ctx: typer.Context,
    twin: Annotated[str, typer.Argument()],
    version: Annotated[int, typer.Argument(help="Version to make current.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the history).")] = "",
) -> None:
    """Approve a version and make it current (atomically)."""
    from twinmesh.stac.results import publish_catalog

    engine = _engine(ctx)
    m = engine.models.approve(twin, version, reason=reason)
    publish_catalog(_settings(ctx), engine)
    console.print(f"{twin}: current model is now version {m.version} ({m.kind})")


@models_app.command("rollback")
def models_rollback(
    ctx: typer.Context,
    twin: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option(help="Why (kept in the history).")] = "",
) -> None:
    """Switch current back to the version it pointed at before the last switch."""
    from twinmesh.stac.results import publish_catalog

    engine = _engine(ctx)
    m = engine.models.roll_back(twin, reason=reason)
    publish_catalog(_settings(ctx), engine)
    console.print(f"{twin}: current model is back to version {m.version} ({m.kind})")


# -- events ------------------------------------------------------------------------------
@events_app.command("export")
def events_export(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="File to write: .parquet or .csv.")],
    twin: Annotated[str | None, typer.Option(help="Only this twin.")] = None,
    kind: Annotated[
        list[str] | None, typer.Option(help="warning, observation and/or job (default all).")
    ] = None,
    start: Annotated[str | None, typer.Option(help="From this time (ISO 8601).")] = None,
    end: Annotated[str | None, typer.Option(help="Until this time (ISO 8601).")] = None,
) -> None:
    """Export a time window of the log to Parquet or CSV."""
    from datetime import datetime

    from twinmesh.core.errors import InvalidParameter

    def when(text: str | None, name: str) -> datetime | None:
        if text is None:
            return None
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            raise InvalidParameter(f"{name} {text!r} is not ISO 8601, e.g. 1987-06-01") from None

    n = _engine(ctx).log.export(
        path, start=when(start, "start"), end=when(end, "end"), kinds=kind, twin=twin
    )
    console.print(f"{n} events written to {path}")


@events_app.command("ingest")
def events_ingest(
    ctx: typer.Context,
    twin: Annotated[str, typer.Argument(help="Twin the observations belong to.")],
    path: Annotated[
        Path,
        typer.Argument(
            help="CSV with a header: variable,location,time,value,units[,source]; "
            "location is a region or gauge id of the twin, time ISO 8601 (UTC if naive)."
        ),
    ],
) -> None:
    """Store observations (gauge discharge, precipitation, ...) in the log, idempotently:
    a row already stored is counted as a duplicate, a row that contradicts a stored one
    is refused (and nothing of the file is stored)."""
    import csv

    from twinmesh.core.errors import InvalidParameter
    from twinmesh.core.events import Observation

    if not path.is_file():
        raise typer.BadParameter(f"no such file: {path}", param_hint="PATH")
    engine = _engine(ctx)
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    observations = []
    for line, row in enumerate(rows, start=2):
        try:
            observations.append(Observation.model_validate({**row, "twin": twin}))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidParameter(f"{path} line {line}: {problems}") from None
    twin_doc = engine.twin(twin)
    report = engine.log.ingest_observations(twin_doc, observations)
    console.print(f"{report.stored} stored, {report.duplicates} duplicates ({len(rows)} rows)")
    # An observation that moves a region into another flood level re-issues the twin's
    # warnings as a job, as the gRPC ingest does.
    from twinmesh.core.triggers import WarningTrigger

    changes = WarningTrigger(engine, threaded=False).after_ingest(twin_doc, report.events)
    for c in changes:
        console.print(
            f"{c.region}: flood level {c.before} -> {c.after} ({c.value_m3s:g} m3/s at "
            f"{c.location}, {c.observed:%Y-%m-%d}); warnings re-issued as a job"
        )
    # Skill on the recent observations below the threshold: a federated retraining job.
    from twinmesh.core.retraining import RetrainTrigger

    retrain = RetrainTrigger(engine, threaded=False).after_ingest(twin_doc, report.events)
    if retrain is not None and retrain.action != "not-eligible":
        console.print(f"retraining: {retrain.action}: {retrain.message}")


@events_app.command("tail")
def events_tail(
    ctx: typer.Context,
    after: Annotated[int, typer.Option(help="Start after this sequence number.")] = 0,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Wait for new events.")] = False,
) -> None:
    """Print events after a sequence number (and new ones as they come with --follow)."""
    log = _engine(ctx).log
    events = log.subscribe(after) if follow else iter(log.replay(after))
    try:
        for e in events:
            what = {
                "warning": e.payload.get("flood_level"),
                "observation": e.payload.get("value"),
                "job": f"{e.payload.get('id')} {e.payload.get('status')} "
                f"{e.payload.get('progress', 0):.0%}",
            }.get(e.kind)
            console.print(f"{e.seq:>8} {e.kind:<11} {e.twin} {e.region or ''} {e.time} {what}")
    except KeyboardInterrupt:
        pass


# -- catalogue -------------------------------------------------------------------------
@catalog_app.command("build")
def catalog_build(ctx: typer.Context) -> None:
    """Rebuild the static STAC catalogue from the store and the model registry
    (idempotent), and load it into the STAC API's backend."""
    from twinmesh.stac.results import publish_catalog

    settings = _settings(ctx)
    n = publish_catalog(settings, _engine(ctx))
    console.print(f"{n} collections at {settings.catalog_dir}")


@catalog_app.command("validate")
def catalog_validate(
    ctx: typer.Context,
    path: Annotated[
        Path | None, typer.Argument(help="Catalogue folder (default: the built one).")
    ] = None,
) -> None:
    """Validate every STAC document offline (core + datacube/xarray-assets schemas)."""
    from twinmesh.stac.validate import StacValidationError, validate_catalog_dir

    target = path or _settings(ctx).catalog_dir
    try:
        n = validate_catalog_dir(target)
    except StacValidationError as exc:
        for line in exc.errors:
            err.print(f"[red]invalid[/] {line}")
        err.print(f"{len(exc.errors)} problem(s) in {target}")
        raise typer.Exit(1) from None
    console.print(f"{n} STAC documents valid in {target}")


# -- services --------------------------------------------------------------------------
class StacBackend(StrEnum):
    embedded = "embedded"
    pgstac = "pgstac"


@serve_app.command("stac")
def serve_stac(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8081).")] = None,
    backend: Annotated[
        StacBackend | None,
        typer.Option(
            help="embedded (SQLite index, no server) or pgstac (needs stac.pgstac_dsn).",
        ),
    ] = None,
) -> None:
    """Serve the STAC API 1.0 over the catalogue (build it with `twinmesh demo init`).

    Try: curl 'http://127.0.0.1:8081/search?collections=fulda-forcing&datetime=1985-06-01T00:00:00Z/..'
    """
    from twinmesh.stac.api import stac_fastapi_defaults

    stac_fastapi_defaults()
    from twinmesh.stac.api.app import serve

    settings = _settings(ctx)
    stac = settings.stac.model_copy(
        update={
            k: v
            for k, v in {
                "host": host,
                "port": port,
                "backend": backend.value if backend else None,
            }.items()
            if v
        }
    )
    if stac.backend == "pgstac":
        _check_pgstac(stac.pgstac_dsn)
    serve(settings.model_copy(update={"stac": stac}))


@serve_app.command("ogc")
def serve_ogc(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8082).")] = None,
) -> None:
    """Serve the OGC API (pygeoapi): the twins' capabilities as Processes (jobs in the
    job store, run by `twinmesh worker`), their datacubes as EDR and Coverages, their
    warnings, regions and gauges as Features.

    Try: curl 'http://127.0.0.1:8082/processes'
    """
    from twinmesh.ogc.app import serve_ogc as serve

    settings = _settings(ctx)
    ogc = settings.ogc.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v}
    )
    serve(settings.model_copy(update={"ogc": ogc}))


@serve_app.command("grpc")
def serve_grpc(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8083).")] = None,
) -> None:
    """Serve the gRPC twin API (twinmesh.v1.TwinService, protos/twinmesh/v1): one call
    per capability, jobs, the live state stream, observation ingest, replay and export;
    with standard health checking and server reflection.

    Try: grpcurl -plaintext 127.0.0.1:8083 describe twinmesh.v1.TwinService
    """
    from twinmesh.grpc.server import serve_grpc as serve

    settings = _settings(ctx)
    grpc = settings.grpc.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v}
    )
    serve(settings.model_copy(update={"grpc": grpc}))


@serve_app.command("openeo")
def serve_openeo(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8084).")] = None,
) -> None:
    """Serve the openEO API 1.2: the twins' datacubes as collections, process graphs,
    batch jobs (run by `twinmesh worker`, results in STAC as Zarr).

    Try: curl 'http://127.0.0.1:8084/collections'
    """
    from twinmesh.openeo.app import serve_openeo as serve

    settings = _settings(ctx)
    openeo = settings.openeo.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v}
    )
    serve(settings.model_copy(update={"openeo": openeo}))


def _check_pgstac(dsn: str | None) -> None:
    """Fail with one clear line, not a pool time-out, when pgstac's database is not there."""
    if not dsn:
        err.print(
            "[red]the pgstac backend needs a database[/]: set TWINMESH_STAC__PGSTAC_DSN="
            "postgresql://user:password@host:5432/db (or stac.pgstac_dsn in twinmesh.yaml)"
        )
        raise typer.Exit(2)
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        err.print("[red]the pgstac backend is not installed[/]: pip install 'twinmesh[pgstac]'")
        raise typer.Exit(2) from None
    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.Error as exc:
        shown = {k: v for k, v in conninfo_to_dict(dsn).items() if k != "password"}
        err.print(f"[red]cannot reach PostgreSQL for pgstac[/] ({shown}): {exc}".strip())
        raise typer.Exit(2) from None


@app.command("up")
def up(
    ctx: typer.Context,
    init: Annotated[
        bool, typer.Option("--init/--no-init", help="Build the demo twins first if needed.")
    ] = True,
) -> None:
    """Run the whole mesh until Ctrl-C.

    Builds the demo twins on the first run, starts every service as its own process
    (the STAC API, the OGC API, the gRPC API and the job workers), prints each one's
    URL and a line when all are ready, restarts a service that dies, and stops them all
    on Ctrl-C.
    """
    from twinmesh.supervisor import Supervisor, mesh_services

    settings = _settings(ctx)
    if init:
        init_demo(settings)
    services = mesh_services(settings)
    env = {"TWINMESH_DATA_DIR": str(settings.data_dir.resolve())}
    supervisor = Supervisor(services, env=env, say=console.print)

    def _stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    # Also when started in the background by a shell, which starts it with SIGINT
    # ignored (Python then installs no KeyboardInterrupt of its own).
    signal.signal(signal.SIGINT, _stop)
    console.print("Starting the mesh:")
    started = time.monotonic()
    try:
        supervisor.start_all()
        console.print(
            f"[bold green]twinmesh is up[/]: {len(services)} service(s) ready in "
            f"{time.monotonic() - started:.1f}s. Ctrl-C stops them all."
        )
        stac = settings.stac.base_url()
        python = _here(Path(sys.executable))
        twinmesh = _here(Path(sys.executable).with_name("twinmesh"))
        grpcurl_path = Path(sys.executable).with_name("grpcurl")
        grpcurl = _here(grpcurl_path) if grpcurl_path.exists() else "grpcurl"
        console.print(
            f"Try:  curl '{stac}/search?collections=fulda-forcing"
            "&datetime=1985-06-01T00:00:00Z/1985-06-01T23:59:59Z'\n"
            f'      {python} -c "from pystac_client import Client; '
            f"print([c.id for c in Client.open('{stac}').get_collections()])\"\n"
            f"      {twinmesh} warnings fulda --issued 1987-03-20\n"
            f"      {twinmesh} verify fulda   # how far the warnings can be trusted\n"
            f"      curl '{settings.ogc.base_url()}/processes'   # the OGC API (pygeoapi)\n"
            f'      {grpcurl} -plaintext -d \'{{"twin_id": "fulda"}}\' {settings.grpc.address()} '
            "twinmesh.v1.TwinService/GetTwin   # the gRPC API (reflection)\n"
            f"      {twinmesh} forecast fulda --submit   "
            f"# a job for the worker; then: {twinmesh} jobs list",
            soft_wrap=True,
            markup=False,
        )
        supervisor.watch()
    except KeyboardInterrupt:
        console.print("Stopping the mesh...")
    except RuntimeError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    finally:
        supervisor.stop_all()
    console.print("All services stopped.")


def _here(path: Path) -> str:
    """A path as short as the user can type it from the working directory."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main() -> None:
    """Console entry point: core errors become one clear line and exit code 2."""
    try:
        app()
    except TwinmeshError as exc:
        err.print(f"[red]{exc.code}[/]: {exc.message}")
        sys.exit(2)


if __name__ == "__main__":
    main()
