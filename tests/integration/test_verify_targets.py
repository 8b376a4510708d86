"""The targets the Fulda twin promises its users, on the twin exactly as `twinmesh demo
init` builds it (the default calibration budget and seed, not the tests' smaller one):
snow lifts the validation NSE to at least 0.82, and the ESP flood warning at the outlet
beats persistence on CSI with at most one false alarm in two warnings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from twinmesh.core.demo import FULDA
from twinmesh.core.engine import Engine
from twinmesh.core.settings import Settings


@pytest.fixture(scope="module")
def default_fulda(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    settings = Settings(data_dir=Path(tmp_path_factory.mktemp("fulda-default")))
    engine = Engine(settings)
    FULDA.build_into(
        engine.store, seed=settings.demo_seed, repetitions=settings.calibration_repetitions
    )
    yield engine
    engine.close()


def test_snow_model_validates_with_nse_above_0_82(default_fulda: Engine) -> None:
    model = default_fulda.twin("fulda").model()
    assert model.kind == "GR4J-CemaNeige"
    assert model.skill["validation"]["period"] == "1986-01-01/1988-12-31"
    assert model.skill["validation"]["nse"] >= 0.82, model.skill


def test_esp_warning_beats_persistence_with_far_at_most_one_half(default_fulda: Engine) -> None:
    report = default_fulda.run("fulda", "verify", {"lead_days": 10, "return_period": 2}).data
    assert report["period"]["start"] == "1986-01-01"
    (point,) = report["points"]
    esp, persistence = point["systems"]["esp"], point["systems"]["persistence"]
    assert esp["csi"] > persistence["csi"], point
    assert esp["far"] <= 0.5, point
    assert esp["bss"] > 0, point  # the probabilities beat climatology
