"""The built wheel as a container image would install it: non-editable, in a fresh venv.

`twinmesh` must be the only top-level import name it installs (other distributions on the
index own `services`, `stac`, `federation`, `gateways`), it must carry its data files
(the vendored STAC extension schemas), and `twinmesh catalog validate` must work from it.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_installs_only_twinmesh_and_validates_a_catalogue(
    tmp_path: Path, demo_settings
) -> None:  # noqa: ANN001
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = dist.glob("twinmesh-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"twinmesh"}, top
    assert any(n.startswith("twinmesh/stac/schemas/datacube/") for n in names)
    assert any(n.startswith("twinmesh/stac/schemas/mlm/") for n in names)
    assert "twinmesh/core/store.py" in names

    # A fresh venv that sees the test environment's packages (nothing downloads), with
    # the wheel installed normally (not editable), run from a folder outside the repo.
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        check=True,
        timeout=120,
    )
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Installing = unpacking a pure-Python wheel into site-packages. The dependencies come
    # from the test environment's site-packages, appended as a plain path: its .pth files
    # (the editable install's finder, which maps twinmesh to the repo) are not run.
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    outer = next(p for p in sys.path if p.endswith("site-packages"))
    Path(site, "outer-env.pth").write_text(outer + "\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TWINMESH_CONFIG": "none.yaml"}
    probe = subprocess.run(
        [
            python,
            "-I",
            "-c",
            "import twinmesh.stac.validate as v, twinmesh.core.store as s; "
            "print(v.__file__); print(s.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    assert all(line.startswith(site) for line in probe.stdout.split()), probe.stdout
    validate = subprocess.run(
        [python, "-I", "-m", "twinmesh.cli", "catalog", "validate", str(demo_settings.catalog_dir)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert validate.returncode == 0, validate.stderr
    assert "STAC documents valid" in validate.stdout
