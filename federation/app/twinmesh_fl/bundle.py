"""The digest of the app bundle's code: what a node operator allows (``join --allow-app``)
and what the ClientApp checks before it reads any local data."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["bundle_digest"]


def bundle_digest(package_dir: str | Path | None = None) -> str:
    """sha256 over the bundle's Python files (relative path and bytes, sorted by path):
    the same value for the source tree and the copy Flower installs on a node."""
    root = Path(package_dir) if package_dir else Path(__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.glob("*.py")):
        h.update(path.name.encode() + b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()
