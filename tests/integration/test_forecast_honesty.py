"""Forecasts a policy user can trust, on the built demo twins: ESP members are other
years' forcing (never the verified year), the forcing mode is recorded in every forecast
and warning, the perfect-forecast reference is never labelled a forecast, thresholds come
from the model's own climate, and ``verify`` scores what it says it scores."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.integration.test_cli import run
from twinmesh.core.capabilities.hydrology import (
    PERFECT_FORECAST,
    is_perfect_forecast,
    region_forcing,
)
from twinmesh.core.engine import Engine
from twinmesh.core.hydrology.extremes import annual_maxima, fit_gumbel, return_levels
from twinmesh.core.settings import Settings
from twinmesh.core.worker import Worker
from twinmesh.stac.catalog import build_catalog
from twinmesh.stac.results import result_publisher


@pytest.fixture
def own_settings(demo_settings: Settings, tmp_path: Path) -> Settings:
    """A data dir of its own (a copy of the demo store and its catalogue): publishing
    results must not change the shared demo catalogue other tests count."""
    shutil.copytree(demo_settings.resolved_store_url, tmp_path / "store")
    settings = Settings(data_dir=tmp_path, stac=demo_settings.stac)
    build_catalog(Engine(settings).store, settings.catalog_dir)
    return settings


@pytest.mark.parametrize("issued", ["1980-01-01", "1984-02-29", "1987-03-01", "1988-12-31"])
def test_esp_members_are_other_years_of_the_record(demo_engine: Engine, issued: str) -> None:
    twin = demo_engine.twin("fulda")
    forcing = region_forcing(demo_engine.store, twin)
    fc = demo_engine.run("fulda", "forecast", {"issued": issued, "lead_days": 10}).data
    day = date.fromisoformat(issued)
    starts = pd.DatetimeIndex(fc["trace_start"].values)
    assert fc.sizes["member"] == len(starts) >= 8
    # One member per other year, never the verified year, each the same calendar window:
    # the day before a trace starts is the issue day's date in another year.
    twins = [(start - pd.Timedelta(days=1)).date() for start in starts]
    assert len({d.year for d in twins}) == len(twins) and day.year not in {d.year for d in twins}
    for d in twins:
        leap_day = (day.month, day.day) == (2, 29)
        assert (d.month, d.day) == ((2, 28) if leap_day else (day.month, day.day))
    # The members' forcing is the record's forcing of those windows: run the model on it
    # by hand from the issue day's state and compare.
    outlet = [r.id for r in twin.regions].index("fulda-basin")
    ens = demo_engine.store.open("fulda", "forcing-ensemble").sel(issued=issued)
    for m, start in enumerate(starts):
        i = forcing.time.get_loc(start)
        np.testing.assert_allclose(
            ens["precipitation"].isel(member=m, lead=slice(0, 10)).sel(region="fulda-basin"),
            forcing.precipitation_mm[outlet, i : i + 10],
            rtol=1e-5,
        )


def test_forcing_mode_is_recorded_in_every_forecast_and_warning(demo_engine: Engine) -> None:
    for forcing in ("ensemble", "observed"):
        inputs = {"issued": "1987-03-01", "lead_days": 7, "forcing": forcing}
        fc = demo_engine.run("fulda", "forecast", inputs)
        assert fc.forcing_mode and fc.data.attrs["forcing_mode"] == fc.forcing_mode
        assert fc.to_json()["attrs"]["twinmesh_forcing_mode"] == fc.forcing_mode
        warned = demo_engine.run("fulda", "warnings", inputs)
        assert warned.data["features"]
        for feature in warned.data["features"]:
            props = feature["properties"]
            assert props["forcing_mode"] == fc.forcing_mode
            assert "model" in props["threshold_source"]
        perfect = forcing == "observed"
        assert is_perfect_forecast(fc.forcing_mode) is perfect
        if perfect:
            assert fc.forcing_mode.startswith(PERFECT_FORECAST)
            assert fc.data.sizes["member"] == 1
            assert "not a forecast" in fc.data.attrs["generated"]
            assert all(
                any("not a forecast" in n for n in f["properties"]["notes"])
                for f in warned.data["features"]
            )
        else:
            assert "ESP" in fc.forcing_mode and "perfect" not in fc.forcing_mode
            assert "ensemble model forecast" in fc.data.attrs["generated"]


def test_perfect_forecast_warnings_are_never_issued_to_the_log(demo_engine: Engine) -> None:
    before = demo_engine.log.latest_sequence()
    demo_engine.run("fulda", "warnings", {"issued": "1986-05-01", "forcing": "observed"})
    assert demo_engine.log.latest_sequence() == before
    demo_engine.run("fulda", "warnings", {"issued": "1986-05-01"})
    assert demo_engine.log.latest_sequence() > before


def test_perfect_forecast_job_is_published_as_a_reference_not_a_forecast(
    own_settings: Settings,
) -> None:
    demo_engine = Engine(own_settings)
    job = demo_engine.submit(
        "fulda", "forecast", {"issued": "1986-05-01", "lead_days": 5, "forcing": "observed"}
    )
    worker = Worker(demo_engine, publishers=[result_publisher(own_settings)])
    assert worker.run_job(job.id)
    record = demo_engine.jobs.result(job.id)
    path = f"{demo_engine.store.root}/fulda/results/{job.id}/item.json"
    item = json.loads(demo_engine.store.fs.cat(path))
    assert record["forcing_mode"].startswith("perfect-forecast reference")
    assert item["properties"]["twinmesh:perfect_forecast"] is True
    title = item["properties"]["title"]
    assert "perfect-forecast reference" in title and "not a forecast" in title
    demo_engine.close()


def test_thresholds_are_the_model_climate_outside_the_verification_years(
    demo_engine: Engine,
) -> None:
    """Independently: simulate the climate years, fit Gumbel, compare."""
    twin = demo_engine.twin("fulda")
    start, end = twin.properties["climate_period"]
    verification = twin.properties["verification_period"]
    assert end < verification[0]
    sim = demo_engine.run("fulda", "simulate", {"start": start, "end": end}).data
    warned = demo_engine.run("fulda", "warnings", {"issued": "1987-03-01"}).data
    for feature in warned["features"]:
        props = feature["properties"]
        series = sim["discharge_m3s"].sel(region=props["region_id"])
        expected = return_levels(annual_maxima(series.values, sim["t"].values), (2, 5, 20))
        for period, level in expected.items():
            assert props["thresholds_m3s"][str(period)] == pytest.approx(level, abs=0.01)


def test_verify_scores_persistence_as_an_independent_count(demo_engine: Engine) -> None:
    report = demo_engine.run("fulda", "verify", {"lead_days": 10}).data
    assert report["period"] == {"start": "1986-01-01", "end": "1988-12-21"}
    (point,) = report["points"]
    assert point["region_id"] == "fulda-basin" and point["gauge_id"] == "grebenau"
    assert {n["region_id"] for n in report["not_verified"]} == {
        "upper-fulda",
        "lueder-schlitz",
        "haune",
        "middle-fulda",
        "lower-fulda",
    }
    # Recount events and persistence from the observed record by hand.
    obs = demo_engine.store.open("fulda", "discharge-observed")["discharge_m3s"]
    q = obs.sel(gauge="grebenau").to_series()
    clim = q["1980-01-01":"1985-12-31"]
    level = fit_gumbel(clim.groupby(clim.index.year).max().to_numpy()).return_level(2)
    assert point["observed_threshold_m3s"] == pytest.approx(level, abs=0.01)
    days = pd.date_range("1986-01-01", "1988-12-21")
    ahead = np.array([q[d + pd.Timedelta(days=1) : d + pd.Timedelta(days=10)].max() for d in days])
    event = ahead >= level
    warned = q[days].to_numpy() >= level
    persistence = point["systems"]["persistence"]
    assert point["issue_days"] == days.size and point["events"] == int(event.sum())
    assert persistence["hits"] == int((warned & event).sum())
    assert persistence["false_alarms"] == int((warned & ~event).sum())
    assert persistence["misses"] == int((~warned & event).sum())
    for score in point["systems"].values():
        total = sum(score[k] for k in ("hits", "misses", "false_alarms", "correct_negatives"))
        assert total == days.size
    # The perfect-forecast bound knows the future weather: it must beat ESP on hits.
    assert point["systems"]["perfect_forecast"]["hits"] >= point["systems"]["esp"]["hits"]


def test_delaware_says_plainly_what_two_years_cannot_verify(demo_engine: Engine) -> None:
    report = demo_engine.run("delaware", "verify", {}).data
    assert report["points"] == []
    assert len(report["not_verified"]) == 8
    assert all("2-year record" in n["reason"] for n in report["not_verified"])
    assert any("1 member" in note for note in report["notes"])


def test_verify_cli_prints_the_table_and_publishes_a_report(own_settings: Settings) -> None:
    demo_settings = own_settings
    done = run("verify", "fulda", "--lead-days", "5", settings=demo_settings)
    assert done.returncode == 0, done.stderr
    for word in ("hits", "POD", "FAR", "CSI", "BSS", "persistence", "perfect-forecast", "ESP"):
        assert word in done.stdout, done.stdout
    assert "stored as job" in done.stdout and "fulda-results" in done.stdout
    job_id = done.stdout.split("stored as job ")[1].split(":")[0]
    items = demo_settings.catalog_dir / "fulda-results" / job_id / f"{job_id}.json"
    item = json.loads(items.read_text())
    assert (
        item["properties"]["title"].startswith("Fulda")
        and "verification report" in (item["properties"]["title"])
    )
    assert item["properties"]["start_datetime"].startswith("1986-01-01")
