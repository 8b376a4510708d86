"""Robustness of federated training on Flower's deployment engine: a SuperNode killed
mid-run, a SuperLink killed and restarted mid-run (same --database), a node that lost the
SuperLink rejoining by itself."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.flower import (
    Federation,
    export_partners,
    federation_settings,
    running_federation,
    stop_group,
    twinmesh_argv,
)
from twinmesh.core.settings import Settings

PARTNERS = ["delaware-nj", "delaware-ny", "fulda"]


@pytest.fixture(scope="module")
def fed_settings(demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return federation_settings(demo_settings, tmp_path_factory.mktemp("federation-robust-db"))


@pytest.fixture(scope="module")
def partner_dirs(
    fed_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    return export_partners(fed_settings, tmp_path_factory.mktemp("partners"), PARTNERS)


def _start_run(fed: Federation, out: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        twinmesh_argv(
            "federation", "run", *fed.security(), "--superlink", fed.address, "--out", str(out),
            *args,
        ),
        env=fed.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _wait_for(predicate, timeout_s: float, what: str, fed: Federation) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n" + fed.log("superlink")[-3000:])
        time.sleep(0.5)


def _sent(fed: Federation, name: str, kind: str) -> int:
    return len([e for e in fed.audit(name) if e.get("event") == "sent" and e["message"] == kind])


@pytest.fixture
def federation(
    fed_settings: Settings, partner_dirs: dict[str, Path], tmp_path: Path
) -> Iterator[Federation]:
    with running_federation(
        tmp_path / "flower",
        fed_settings,
        {"TWINMESH_FEDERATION__ROUND_TIMEOUT_SECONDS": "30"},
        tls=True,  # node keys registered in the SuperLink's database survive its restart
    ) as fed:
        for name in PARTNERS:
            fed.join(name, partner_dirs[name])
        fed.wait_for_nodes(len(PARTNERS))
        yield fed


def test_a_killed_supernode_does_not_fail_the_run(federation: Federation, tmp_path: Path) -> None:
    fed = federation
    first = _start_run(fed, tmp_path / "run1", "--rounds", "1", "--min-nodes", "3")
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err
    victim = "delaware-ny"
    run = _start_run(fed, tmp_path / "run2", "--rounds", "2", "--min-nodes", "2")
    try:
        _wait_for(lambda: _sent(fed, victim, "train") >= 2, 200, "the victim's first train", fed)
        stop_group(fed.nodes[victim], signal.SIGKILL)
        out, err = run.communicate(timeout=400)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, out + err
    result = json.loads(out)
    assert result["rounds"] == 2
    assert any(d["partner"] == victim for d in result["dropped"]), result
    assert f"({victim}) dropped" in err


def test_a_restarted_superlink_finishes_the_run_and_nodes_rejoin(
    federation: Federation, tmp_path: Path
) -> None:
    fed = federation
    assert fed.superlink is not None
    before = sorted(fed.node_ids())
    run = _start_run(fed, tmp_path / "run", "--rounds", "3", "--min-nodes", "3")
    checkpoint = tmp_path / "run" / "checkpoint.json"
    try:
        _wait_for(checkpoint.exists, 200, "round 1's checkpoint", fed)
        stop_group(fed.superlink, signal.SIGKILL)  # the SuperLink and its ServerApp
        time.sleep(3)
        fed.start_superlink()  # same port, same --database
        out, err = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, out + err + fed.log("superlink")[-3000:]
    result = json.loads(out)
    assert result["rounds"] == 3 and result["resumed_after_round"] >= 1, result
    assert sorted(result["partners"]) == sorted(PARTNERS)
    assert "resuming after round" in err
    # every node rejoined by itself (the last round needed all three)
    assert len(fed.node_ids()) == 3
    print("node ids before", before, "after", sorted(fed.node_ids()))
