"""The job table on SQLite and PostgreSQL: claims are exclusive, leases expire and are
taken over, cancel and dismiss stop work, a lost lease refuses completion."""

from __future__ import annotations

import threading
import time

import pytest

from twinmesh.core.db import Database
from twinmesh.core.errors import JobNotFinished, UnknownJob
from twinmesh.core.events import EventLog
from twinmesh.core.jobs import JobStatus, JobStore


@pytest.fixture
def store(database_url: str) -> JobStore:
    return JobStore(Database(database_url))


def test_concurrent_claims_take_each_job_exactly_once(store: JobStore) -> None:
    ids = {store.submit("t", "simulate", {"n": i}).id for i in range(40)}
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while (job := store.claim(name, 60)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)  # every job once, none twice


def test_an_expired_lease_is_taken_over_and_the_old_worker_cannot_complete(
    store: JobStore,
) -> None:
    job = store.submit("t", "forecast", {})
    first = store.claim("w1", 0.3)
    assert first is not None and first.id == job.id and first.attempts == 1
    assert store.claim("w2", 0.3) is None  # lease still held
    time.sleep(0.4)
    second = store.claim("w2", 30)
    assert second is not None and second.worker == "w2" and second.attempts == 2
    assert not store.renew(job.id, "w1", 30).held
    assert not store.complete(job.id, "w1", {"url": "x"}, model_version="1")
    assert store.complete(job.id, "w2", {"url": "y"}, model_version="1")
    assert store.result(job.id) == {"url": "y"}
    assert store.get(job.id).model_version == "1"


def test_cancel_stops_a_running_job_and_never_runs_a_queued_one(store: JobStore) -> None:
    running = store.submit("t", "a", {})
    queued = store.submit("t", "b", {})
    assert store.claim("w", 30).id == running.id
    assert store.cancel(running.id).status is JobStatus.DISMISSED
    lease = store.renew(running.id, "w", 30, progress=0.5)
    assert not lease.held and lease.cancelled
    assert not store.complete(running.id, "w", {}, model_version=None)
    assert store.cancel(queued.id).status is JobStatus.DISMISSED
    assert store.claim("w", 30) is None
    assert store.get(queued.id).openeo_status == "canceled"
    with pytest.raises(JobNotFinished, match="dismissed"):
        store.result(queued.id)


def test_a_failed_job_keeps_its_error_and_finished_jobs_stay_finished(store: JobStore) -> None:
    job = store.submit("t", "a", {})
    store.claim("w", 30)
    assert store.fail(job.id, "w", {"code": "OutOfExtent", "message": "too early"})
    assert store.cancel(job.id).status is JobStatus.FAILED
    with pytest.raises(JobNotFinished, match="too early"):
        store.result(job.id)
    assert store.counts() == {"failed": 1}


def test_unknown_and_malformed_job_ids_are_typed_errors(store: JobStore) -> None:
    with pytest.raises(UnknownJob, match="UUID"):
        store.get("../../etc/passwd")
    with pytest.raises(UnknownJob):
        store.get("00000000-0000-0000-0000-000000000000")


def test_list_filters_and_delete(store: JobStore) -> None:
    a = store.submit("fulda", "a", {}, owner="alice")
    store.submit("delaware", "a", {}, owner="bob")
    assert [j.id for j in store.list(owner="alice")] == [a.id]
    assert len(store.list(twin="delaware")) == 1
    assert len(store.list(status="accepted")) == 2
    store.delete(a.id)
    with pytest.raises(UnknownJob):
        store.get(a.id)


def test_a_job_whose_workers_keep_dying_is_failed_not_handed_on(store: JobStore) -> None:
    job = store.submit("t", "forecast", {})
    for attempt in (1, 2):
        claimed = store.claim(f"w{attempt}", 0.05, max_attempts=2)
        assert claimed is not None and claimed.attempts == attempt
        time.sleep(0.1)  # the worker died: its lease runs out
    later = store.submit("t", "simulate", {})
    nxt = store.claim("w3", 30, max_attempts=2)
    assert nxt is not None and nxt.id == later.id
    lost = store.get(job.id)
    assert lost.status is JobStatus.FAILED and lost.error["code"] == "WorkerLost"


def test_every_change_of_a_job_is_a_job_event_in_the_log_in_order(store: JobStore) -> None:
    log = EventLog(store.db)
    start = log.latest_sequence()
    done = store.submit("t", "forecast", {"members": 3}, owner="alice")
    claimed = store.claim("w1", 30)
    assert claimed is not None and claimed.id == done.id
    assert store.renew(done.id, "w1", 30, progress=0.5, message="half way").held
    assert store.renew(done.id, "w1", 30, progress=0.5, message="half way").held  # nothing new
    assert store.complete(done.id, "w1", {"url": "x"}, model_version="2")
    dropped = store.submit("t", "simulate", {})
    store.delete(dropped.id)

    events = log.replay(start, kinds="job")
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert [(e.payload["id"], e.payload["status"]) for e in events] == [
        (done.id, "accepted"),
        (done.id, "running"),
        (done.id, "running"),
        (done.id, "successful"),
        (dropped.id, "accepted"),
        (dropped.id, "dismissed"),
        (dropped.id, "deleted"),
    ]
    progress = events[2].payload
    assert progress["progress"] == 0.5 and progress["message"] == "half way"
    assert events[3].payload["result"] == {"url": "x"} and events[3].payload["model_version"] == "2"
    assert all(e.twin == "t" and e.region is None for e in events)
    assert [e.variable for e in events[:4]] == ["forecast"] * 4
    # Who asked, which worker and with what inputs stay in the job table.
    assert not {"owner", "worker", "inputs", "lease_until"} & set(events[0].payload)
    # Other kinds are not job events; all kinds together keep the same order.
    assert log.replay(start, kinds=["warning", "observation"]) == []
    assert [e.seq for e in log.replay(start)] == [e.seq for e in events]


def test_a_job_failed_for_lost_workers_is_a_job_event(store: JobStore) -> None:
    log = EventLog(store.db)
    start = log.latest_sequence()
    job = store.submit("t", "forecast", {})
    for attempt in range(3):
        assert store.claim(f"w{attempt}", 0.01, max_attempts=3) is not None
        time.sleep(0.05)
    assert store.claim("w9", 30, max_attempts=3) is None
    statuses = [e.payload["status"] for e in log.replay(start, kinds="job")]
    assert statuses == ["accepted", "running", "running", "running", "failed"]
    assert store.get(job.id).error["code"] == "WorkerLost"  # type: ignore[index]


def test_a_subscriber_is_woken_by_a_job_change(store: JobStore) -> None:
    log = EventLog(store.db)
    stop = threading.Event()
    seen: list[str] = []

    def follow() -> None:
        for event in log.subscribe(log.latest_sequence(), kinds="job", stop=stop, poll_seconds=30):
            seen.append(event.payload["status"])
            if len(seen) == 2:
                return

    thread = threading.Thread(target=follow)
    thread.start()
    time.sleep(0.3)
    job = store.submit("t", "forecast", {})
    store.cancel(job.id)
    thread.join(timeout=10)  # a 30 s poll: only a wake-up ends it this soon
    stop.set()
    assert seen == ["accepted", "dismissed"]
