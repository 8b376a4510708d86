"""The twinmesh command as a user meets it: help that teaches, clear errors, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from twinmesh.core.settings import Settings


def run(*args: str, settings: Settings | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "twinmesh.cli"]
    if settings is not None:
        cmd += ["--data-dir", str(settings.data_dir)]
    env = {**os.environ, "COLUMNS": "120", "TWINMESH_CALIBRATION_REPETITIONS": "800"}
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env=env, timeout=300)


def test_help_names_the_first_command_and_every_group() -> None:
    out = run("--help").stdout
    assert "twinmesh up" in out
    for command in ("up", "demo", "serve", "catalog", "warnings", "config"):
        assert command in out


def test_demo_init_is_idempotent_and_prints_skill(demo_settings: Settings) -> None:
    result = run("demo", "init", settings=demo_settings)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    assert "validation" in result.stdout and "KGE" in result.stdout


def test_catalog_validate_passes_then_rejects_a_corrupted_cube_field(
    demo_settings: Settings, tmp_path
) -> None:
    ok = run("catalog", "validate", settings=demo_settings)
    assert ok.returncode == 0 and "STAC documents valid" in ok.stdout
    assert int(ok.stdout.split(" STAC documents")[0].split()[-1]) >= 21
    broken = tmp_path / "catalog"
    shutil.copytree(demo_settings.catalog_dir, broken)
    path = broken / "fulda-forcing" / "collection.json"
    doc = json.loads(path.read_text())
    doc["cube:dimensions"]["t"]["type"] = 3
    path.write_text(json.dumps(doc))
    bad = run("catalog", "validate", str(broken), settings=demo_settings)
    assert bad.returncode == 1
    assert "cube:dimensions/t" in bad.stderr  # names the broken dimension


def test_warnings_json_and_typed_errors(demo_settings: Settings) -> None:
    ok = run("warnings", "fulda", "--issued", "1984-02-01", "--json", settings=demo_settings)
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)  # GeoJSON: the declared output kind of warnings
    assert doc["type"] == "FeatureCollection"
    regions = [f["properties"] for f in doc["features"]]
    assert len(regions) == 6 and all(0 <= r["flood_probability"]["2"] <= 1 for r in regions)
    assert doc["properties"]["twinmesh:model_version"] == 1
    unknown = run("warnings", "rhine", settings=demo_settings)
    assert unknown.returncode == 2 and "UnknownTwin" in unknown.stderr and "fulda" in unknown.stderr
    neg = run("warnings", "fulda", "--members", "-3", settings=demo_settings)
    assert neg.returncode == 2 and "members must be between 1 and 200" in neg.stderr


def test_serve_pgstac_without_a_reachable_database_says_so(demo_settings: Settings) -> None:
    missing = run("serve", "stac", "--backend", "pgstac", settings=demo_settings)
    assert missing.returncode == 2 and "TWINMESH_STAC__PGSTAC_DSN" in missing.stderr
    env_dsn = "postgresql://twin:hunter2@127.0.0.1:1/none"
    os.environ["TWINMESH_STAC__PGSTAC_DSN"] = env_dsn
    try:
        down = run("serve", "stac", "--backend", "pgstac", settings=demo_settings)
    finally:
        del os.environ["TWINMESH_STAC__PGSTAC_DSN"]
    assert down.returncode == 2 and "cannot reach PostgreSQL" in down.stderr
    assert "hunter2" not in down.stderr  # the password is never printed
    bad = run("serve", "stac", "--backend", "sqlite", settings=demo_settings)
    assert bad.returncode == 2 and "embedded" in bad.stderr


def test_an_invalid_setting_is_one_clear_line(tmp_path) -> None:
    config = tmp_path / "twinmesh.yaml"
    config.write_text("stac: {port: not-a-port}\n")
    result = run("--config", str(config), "config")
    assert result.returncode == 2
    assert "invalid setting stac.port" in result.stderr
    assert "Traceback" not in result.stderr


def test_observations_ingest_idempotently_and_export(demo_settings: Settings, tmp_path) -> None:
    import pandas as pd

    csv = tmp_path / "obs.csv"
    csv.write_text(
        "variable,location,time,value,units\n"
        "discharge,upper-fulda,1988-01-01,12.5,m3 s-1\n"
        "discharge,upper-fulda,1988-01-02,13.0,m3 s-1\n"
    )
    first = run("events", "ingest", "fulda", str(csv), settings=demo_settings)
    assert first.returncode == 0 and "2 stored, 0 duplicates" in first.stdout, first.stderr
    again = run("events", "ingest", "fulda", str(csv), settings=demo_settings)
    assert "0 stored, 2 duplicates" in again.stdout
    out = tmp_path / "window.parquet"
    exported = run(
        "events",
        "export",
        str(out),
        "--kind",
        "observation",
        "--start",
        "1988-01-02",
        settings=demo_settings,
    )
    assert exported.returncode == 0, exported.stderr
    frame = pd.read_parquet(out)
    assert list(frame["region"]) == ["upper-fulda"] and "payload" in frame.columns
    bad = tmp_path / "bad.csv"
    bad.write_text("variable,location,time,value\ndischarge,upper-fulda,1988-01-01,1\n")
    refused = run("events", "ingest", "fulda", str(bad), settings=demo_settings)
    assert refused.returncode == 2 and "line 2: units" in refused.stderr


def test_ingesting_a_flood_level_reissues_the_warnings_as_a_job(
    demo_settings: Settings, tmp_path
) -> None:
    """The CLI ingest path runs the same trigger as the gRPC ingest: discharge at the
    outlet gauge above the 2-year level queues one warnings job for the twin."""
    data_dir = tmp_path / "own"
    shutil.copytree(demo_settings.resolved_store_url, data_dir / "store")
    own = Settings(data_dir=data_dir)
    csv = tmp_path / "flood.csv"
    csv.write_text(
        "variable,location,time,value,units\ndischarge_m3s,grebenau,1987-03-25,480.0,m3 s-1\n"
    )
    done = run("events", "ingest", "fulda", str(csv), settings=own)
    assert done.returncode == 0, done.stderr
    assert "fulda-basin: flood level none ->" in done.stdout, done.stdout
    from twinmesh.core.engine import Engine

    engine = Engine(own)
    queued = [j for j in engine.jobs.list() if j.capability == "warnings"]
    engine.close()
    assert len(queued) == 1 and queued[0].inputs["issued"] == "1987-03-25"
