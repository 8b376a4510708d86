"""TLS and SuperNode authentication, on by default: development certificates from
`twinmesh federation certs`, node keys registered with the SuperLink; a node whose key is
not registered is refused."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.flower import export_partners, running_federation, twinmesh_argv
from twinmesh.core.settings import Settings


@pytest.fixture(scope="module")
def partner_dirs(
    demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    return export_partners(
        demo_settings, tmp_path_factory.mktemp("partners"), ["delaware-nj", "delaware-ny"]
    )


def test_commands_refuse_to_start_without_tls_or_insecure(demo_settings: Settings) -> None:
    for args in (["superlink"], ["run", "--superlink", "127.0.0.1:1"]):
        proc = subprocess.run(
            twinmesh_argv("federation", *args), capture_output=True, text=True, timeout=60,
            env={"TWINMESH_DATA_DIR": str(demo_settings.data_dir), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert proc.returncode != 0
        assert "--insecure" in proc.stderr and "--certs" in proc.stderr


def test_an_unregistered_supernode_is_refused(
    demo_settings: Settings, partner_dirs: dict[str, Path], tmp_path: Path
) -> None:
    with running_federation(tmp_path / "flower", demo_settings, tls=True) as fed:
        assert fed.certs is not None
        fed.join("delaware-nj", partner_dirs["delaware-nj"])  # registered first
        fed.wait_for_nodes(1)
        registered = fed.node_ids()
        fed.join("delaware-ny", partner_dirs["delaware-ny"], register=False)
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:
            assert fed.node_ids() == registered
            time.sleep(2)
        log = (tmp_path / "flower" / "delaware-ny" / "supernode.log").read_text()
        assert "Failed to activate SuperNode" in log, log[-3000:]
        # the CLI's registry agrees: one node, and it is the registered one
        assert json.dumps(registered) == json.dumps(fed.node_ids())
