"""The demo twins: real basins built from data that ships inside PyPI wheels.

``DEMO_TWINS`` lists them; each entry knows its build fingerprint (so a rebuild
happens only when something it depends on changed) and how to build itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from twinmesh.core.demo import delaware, fulda
from twinmesh.core.demo.common import Step
from twinmesh.core.store import DatacubeStore
from twinmesh.core.twin import Twin

__all__ = ["DemoTwin", "DEMO_TWINS", "FULDA", "DELAWARE"]


@dataclass(frozen=True)
class DemoTwin:
    id: str
    summary: str
    build_id: Callable[[int, int], str]
    build: Callable[..., Twin]

    def is_current(self, store: DatacubeStore, seed: int, repetitions: int) -> bool:
        if self.id not in store.twin_ids():
            return False
        built = store.read_twin(self.id).properties.get("build_id")
        return built == self.build_id(seed, repetitions)

    def build_into(
        self, store: DatacubeStore, *, seed: int, repetitions: int, progress: Step | None = None
    ) -> Twin:
        return self.build(store, seed=seed, repetitions=repetitions, progress=progress)


#: Registered as entry points of the ``twinmesh.twins`` group (see pyproject.toml),
#: exactly as a twin from another package would be.
FULDA = DemoTwin(
    fulda.TWIN_ID,
    "Fulda (DE): 10-year record, derived grid, one GR4J with snow",
    fulda.build_id,
    fulda.build_fulda_twin,
)
DELAWARE = DemoTwin(
    delaware.TWIN_ID,
    "Delaware River Basin (US): NHM domain, 168 USGS gauges, one GR4J with snow per basin",
    delaware.build_id,
    delaware.build_delaware_twin,
)
DEMO_TWINS: dict[str, DemoTwin] = {t.id: t for t in (FULDA, DELAWARE)}
