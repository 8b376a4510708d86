"""Twins from outside: builders found through the ``twinmesh.twins`` entry-point group.

An institution adds its own twin without editing core: its package declares, in
its ``pyproject.toml``::

    [project.entry-points."twinmesh.twins"]
    mybasin = "mypackage.twin:BUILDER"

where ``BUILDER`` has the attributes of :class:`TwinBuilder`. The demo twins are
registered the same way by twinmesh's own distribution. ``twinmesh demo init``
builds every registered twin; ``twinmesh twins`` says where each came from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

from twinmesh.core.store import DatacubeStore
from twinmesh.core.twin import Twin

__all__ = ["ENTRY_POINT_GROUP", "TwinBuilder", "RegisteredBuilder", "twin_builders"]

ENTRY_POINT_GROUP = "twinmesh.twins"
logger = logging.getLogger(__name__)


class TwinBuilder(Protocol):
    """What a twin package provides: an id, a summary, and an idempotent build."""

    id: str
    summary: str

    def is_current(self, store: DatacubeStore, seed: int, repetitions: int) -> bool: ...

    def build_into(
        self, store: DatacubeStore, *, seed: int, repetitions: int, progress: Any = None
    ) -> Twin: ...


@dataclass(frozen=True)
class RegisteredBuilder:
    """A builder and where it was registered (distribution and entry point)."""

    builder: TwinBuilder
    source: str

    @property
    def id(self) -> str:
        return self.builder.id


def twin_builders() -> dict[str, RegisteredBuilder]:
    """Every builder registered in the ``twinmesh.twins`` group, by twin id.

    A builder that fails to import is skipped with a warning naming it, so one broken
    package does not take the others down.
    """
    found: dict[str, RegisteredBuilder] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            builder = ep.load()
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            logger.warning("twin builder %s (%s) failed to load: %s", ep.name, ep.value, exc)
            continue
        dist = ep.dist.name if ep.dist is not None else "?"
        found[builder.id] = RegisteredBuilder(builder, f"{dist} entry point {ep.name} = {ep.value}")
    return found
