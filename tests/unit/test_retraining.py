"""The retraining trigger (twinmesh.core.retraining): the skill on recent observations
against a hand-computed NSE, the verdict (below / at the threshold, too few
observations), which twins it retrains, and what it submits — a ``federated_training``
job with the trigger's reasons, none while one is queued or running, none within the
debounce window — on SQLite and PostgreSQL, over a tiny twin with the skill given."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twinmesh.core.capabilities import job_kinds
from twinmesh.core.engine import Engine
from twinmesh.core.events import Event, Observation
from twinmesh.core.jobs import JobStatus
from twinmesh.core.retraining import (
    JOB_KIND,
    TRIGGER_OWNER,
    RecentSkill,
    RetrainTrigger,
    eligible,
    recent_nse,
    skill_verdict,
)
from twinmesh.core.settings import FederationSettings, Settings
from twinmesh.core.twin import Region, Twin


# -- the skill, by hand --------------------------------------------------------------
def test_recent_nse_matches_a_hand_computed_nse() -> None:
    # a: mean(obs) 2.5, sum((obs-mean)^2) = 5, sum((sim-obs)^2) = 1 -> NSE 0.8
    # b: mean(obs) 3, sum((obs-mean)^2) = 2, sum((sim-obs)^2) = 2 -> NSE 0
    # weighted by days: (0.8 * 4 + 0 * 2) / 6
    pairs = {
        "a": (np.array([1.0, 2.0, 3.0, 5.0]), np.array([1.0, 2.0, 3.0, 4.0])),
        "b": (np.array([3.0, 3.0]), np.array([2.0, 4.0])),
    }
    mean, days, per = recent_nse(pairs)
    assert per["a"] == (pytest.approx(0.8), 4)
    assert per["b"] == (pytest.approx(0.0), 2)
    assert days == 6
    assert mean == pytest.approx((0.8 * 4 + 0.0 * 2) / 6)


def test_recent_nse_skips_gaps_constant_and_single_days() -> None:
    pairs = {
        # the NaN day is a gap: NSE of the other three (obs 1, 2, 3; sim 1, 2, 4)
        "gappy": (np.array([1.0, 9.0, 2.0, 4.0]), np.array([1.0, np.nan, 2.0, 3.0])),
        "flat": (np.array([1.0, 2.0]), np.array([5.0, 5.0])),
        "single": (np.array([1.0]), np.array([2.0])),
    }
    mean, days, per = recent_nse(pairs)
    assert per["gappy"] == (pytest.approx(1 - 1 / 2), 3)
    assert per["flat"] == (None, 2) and per["single"] == (None, 1)
    assert days == 3 and mean == pytest.approx(0.5)
    assert recent_nse({}) == (None, 0, {})


def test_verdict_below_at_and_above_the_threshold_and_too_few() -> None:
    below, why = skill_verdict(0.2, 30, threshold=0.5, min_observations=20)
    assert below is True and "0.200" in why and "below 0.5" in why
    assert skill_verdict(0.5, 30, threshold=0.5, min_observations=20)[0] is False
    assert skill_verdict(0.9, 30, threshold=0.5, min_observations=20)[0] is False
    undecided, why = skill_verdict(-3.0, 19, threshold=0.5, min_observations=20)
    assert undecided is None and "19 observation day(s)" in why and "20" in why
    assert skill_verdict(None, 30, threshold=0.5, min_observations=20)[0] is None


def test_eligible_by_model_kind_or_opt_in() -> None:
    twin = tiny_twin()
    fed = FederationSettings()
    assert eligible(twin, "federated-mlp", fed)[0] is True
    ok, why = eligible(twin, "gr4j", fed)
    assert ok is False and "gr4j" in why and "retrain_twins" in why
    assert eligible(twin, "gr4j", FederationSettings(retrain_twins=["tiny"]))[0] is True


# -- the trigger over a tiny twin ----------------------------------------------------
def tiny_twin() -> Twin:
    square = {
        "type": "Polygon",
        "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]],
    }
    return Twin(
        id="tiny",
        title="Tiny twin",
        description="One region.",
        bbox=(0.0, 0.0, 1.0, 1.0),
        time_extent=(date(2020, 1, 1), date(2024, 12, 31)),
        regions=[Region(id="upper", name="Upper", geometry=square, area_km2=10.0)],
        gauges=[],
        datasets=[],
        capabilities=[],
        license="CC0-1.0",
    )


class SkillOf:
    """A skill function the test sets (the trigger's I/O-free seam)."""

    def __init__(self) -> None:
        self.nse: float | None = 0.1
        self.observations = 40
        self.calls = 0

    def __call__(self, engine: Engine, twin: Twin, window_days: int) -> RecentSkill:
        self.calls += 1
        version = engine.model(twin).version
        return RecentSkill(
            twin.id,
            version,
            engine.model(twin).kind,
            date(2023, 4, 3),
            date(2023, 6, 1),
            self.observations,
            self.nse,
        )


@pytest.fixture
def engine(tmp_path: Path, database_url: str) -> Iterator[Engine]:
    settings = Settings(
        data_dir=tmp_path,
        store_url=str(tmp_path / "store"),
        database_url=database_url,
        federation=FederationSettings(
            superlink="127.0.0.1:9",
            insecure=True,
            retrain_below_nse=0.5,
            retrain_min_observations=20,
            retrain_debounce_seconds=3600,
            retrain_rounds=2,
        ),
    )
    eng = Engine(settings)
    eng.store.write_twin(tiny_twin())
    register(eng, "federated-mlp")
    yield eng
    eng.close()


def register(engine: Engine, kind: str) -> None:
    engine.models.register(
        "tiny",
        kind=kind,
        parameters={"w": 1.0},
        skill={"validation": {"period": "2020-01-01/2020-12-31", "nse": 0.7, "kge": 0.6}},
        provenance={"method": "test"},
        approve=True,
    )


def observations(engine: Engine, n: int = 1) -> list[Event]:
    twin = engine.twin("tiny")
    report = engine.log.ingest_observations(
        twin,
        [
            Observation(
                twin="tiny",
                variable="discharge_m3s",
                location="upper",
                time=datetime(2023, 6, 1, h, tzinfo=UTC),
                value=1.0 + h,
                units="m3 s-1",
            )
            for h in range(n)
        ],
    )
    return report.events


def test_a_falling_skill_submits_one_federated_training_job(engine: Engine) -> None:
    skill = SkillOf()
    trigger = RetrainTrigger(engine, skill=skill, threaded=False)
    decision = trigger.after_ingest(engine.twin("tiny"), observations(engine))
    assert decision is not None and decision.action == "submitted", decision
    job = engine.jobs.get(str(decision.job_id))
    assert job.capability == JOB_KIND and job.owner == TRIGGER_OWNER
    assert job.status is JobStatus.ACCEPTED
    assert job.inputs["superlink"] == "127.0.0.1:9" and job.inputs["rounds"] == 2
    assert job.inputs["trigger"]["skill_nse"] == pytest.approx(0.1)
    assert job.inputs["trigger"]["threshold_nse"] == 0.5
    assert job.inputs["trigger"]["window"] == "2023-04-03/2023-06-01"
    assert job.inputs["trigger"]["observations"] == 40
    assert "below 0.5" in job.inputs["trigger"]["reason"]
    # the inputs are what the federation's job kind accepts (the entry point's contract)
    assert JOB_KIND in job_kinds()
    job_kinds()[JOB_KIND].validate(job.inputs)
    json.dumps(decision.to_dict())

    # queued: the next ingest does not submit another, and says which job retrains it
    again = trigger.after_ingest(engine.twin("tiny"), observations(engine, 2))
    assert again is not None and again.action == "busy" and str(job.id) in again.message
    assert len(engine.jobs.list(twin="tiny")) == 1


def test_a_recent_retraining_debounces_the_next_one(engine: Engine) -> None:
    trigger = RetrainTrigger(engine, skill=SkillOf(), threaded=False)
    first = trigger.decide(engine.twin("tiny"))
    assert first.action == "submitted"
    # the job ran and failed (say the SuperLink was away): not retried at every ingest
    engine.jobs.claim("w", 30, job_id=str(first.job_id))
    engine.jobs.fail(str(first.job_id), "w", {"code": "X", "message": "away"})
    second = trigger.decide(engine.twin("tiny"))
    assert second.action == "debounced" and "retrain_debounce_seconds" in second.message
    # once the window is over, it is submitted again
    engine.settings.federation.retrain_debounce_seconds = 0
    assert trigger.decide(engine.twin("tiny")).action == "submitted"


@pytest.mark.parametrize(
    ("nse", "days", "action"),
    [(0.8, 40, "skill-ok"), (0.5, 40, "skill-ok"), (-2.0, 19, "undecided"), (None, 0, "undecided")],
)
def test_no_job_when_the_skill_holds_or_too_few_observations(
    engine: Engine, nse: float | None, days: int, action: str
) -> None:
    skill = SkillOf()
    skill.nse, skill.observations = nse, days
    decision = RetrainTrigger(engine, skill=skill, threaded=False).decide(engine.twin("tiny"))
    assert decision.action == action
    assert engine.jobs.list(twin="tiny") == []


def test_twins_it_does_not_retrain_and_a_missing_superlink(engine: Engine) -> None:
    skill = SkillOf()
    trigger = RetrainTrigger(engine, skill=skill, threaded=False)
    register(engine, "gr4j")  # current model is no federated one: not retrained, not scored
    assert trigger.decide(engine.twin("tiny")).action == "not-eligible"
    assert skill.calls == 0
    engine.settings.federation.retrain_twins = ["tiny"]  # opted in
    engine.settings.federation.superlink = None
    decision = trigger.decide(engine.twin("tiny"))
    assert decision.action == "no-superlink" and "federation.superlink" in decision.message
    assert engine.jobs.list(twin="tiny") == []


def test_only_discharge_observations_of_the_twin_are_offered(engine: Engine) -> None:
    trigger = RetrainTrigger(engine, skill=SkillOf(), threaded=False)
    assert trigger.after_ingest(engine.twin("tiny"), []) is None


def test_offer_checks_on_the_trigger_thread(engine: Engine) -> None:
    trigger = RetrainTrigger(engine, skill=SkillOf(), idle_seconds=0.2)
    try:
        events: list[Any] = observations(engine)
        trigger.offer(engine.twin("tiny"), events)
        trigger.offer(engine.twin("tiny"), events)  # held together or busy: one job
        assert trigger.wait_idle(30)
        assert [d.action for d in trigger.decisions][0] == "submitted"
        assert len(engine.jobs.list(twin="tiny")) == 1
    finally:
        trigger.close()
