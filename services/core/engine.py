"""The twin engine: the one object adapters hold.

``Engine(settings)`` opens the datacube store and the SQL database (jobs, model
registry, event log) and offers the contract every adapter builds on:

- :meth:`Engine.run` validates a capability request against its declaration and
  computes it now (small requests);
- :meth:`Engine.submit` stores it as a job that a ``twinmesh worker`` runs;
- :attr:`Engine.models` and :attr:`Engine.log` are the model registry and the
  warning/observation log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from twinmesh.core.capabilities.declaration import CapabilityInputs
from twinmesh.core.db import Database
from twinmesh.core.errors import CapabilityNotOffered, TooLarge, UnknownCapability
from twinmesh.core.results import Result
from twinmesh.core.settings import Settings
from twinmesh.core.store import DatacubeStore
from twinmesh.core.twin import Twin

if TYPE_CHECKING:
    from twinmesh.core.capabilities.declaration import Capability
    from twinmesh.core.events import EventLog
    from twinmesh.core.jobs import Job, JobStore
    from twinmesh.core.models import ModelRegistry, ModelVersion

__all__ = ["Engine", "Progress", "no_progress"]

#: progress(fraction 0..1, message): long work reports through it; a job's version
#: raises JobCancelled when the job was cancelled, so work stops at the next report.
Progress = Callable[[float, str], None]


def no_progress(_fraction: float, _message: str) -> None:
    return None


class Engine:
    """Store, database and capabilities of one twinmesh installation."""

    def __init__(self, settings: Settings, *, store: DatacubeStore | None = None) -> None:
        self.settings = settings
        self.store = store or DatacubeStore(settings.resolved_store_url, settings.storage_options)

    # -- the database side, opened on first use ----------------------------------------
    @cached_property
    def db(self) -> Database:
        db = Database(self.settings.resolved_database_url)
        db.migrate()
        return db

    @cached_property
    def jobs(self) -> JobStore:
        from twinmesh.core.jobs import JobStore

        return JobStore(self.db)

    @cached_property
    def models(self) -> ModelRegistry:
        from twinmesh.core.models import ModelRegistry

        return ModelRegistry(self.db)

    @cached_property
    def log(self) -> EventLog:
        from twinmesh.core.events import EventLog

        return EventLog(self.db)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()

    # -- twins, models, capabilities ----------------------------------------------------
    def twin(self, twin_id: str) -> Twin:
        return self.store.read_twin(twin_id)

    def model(self, twin: Twin, version: int | str = "current") -> ModelVersion:
        """A model version of the twin (``current`` by default).

        A twin whose document brings calibrated models (the demos, an institution's
        own builder) has them registered on first use, the first one approved.
        """
        if self.models.current_version(twin.id) is None and twin.models:
            self.models.seed_from_twin(twin)
        return self.models.get(twin.id, version)

    def capability(self, twin: Twin, name: str) -> Capability:
        """The declaration of a capability the twin offers."""
        from twinmesh.core.capabilities import CAPABILITIES

        if name not in CAPABILITIES:
            raise UnknownCapability(
                f"unknown capability {name!r}; twinmesh has: {', '.join(CAPABILITIES)}"
            )
        if name not in twin.capabilities:
            raise CapabilityNotOffered(
                f"twin {twin.id!r} does not offer {name!r}; it offers: "
                f"{', '.join(twin.capabilities)}"
            )
        return CAPABILITIES[name]

    def check(
        self, twin_id: str, capability: str, inputs: Mapping[str, Any] | CapabilityInputs | None
    ) -> tuple[Twin, Capability, CapabilityInputs]:
        """Validate a request fully (inputs, twin, capability, size) without computing it."""
        from twinmesh.core.capabilities import CAPABILITIES, job_kinds

        kinds = job_kinds() if capability not in CAPABILITIES else {}
        if capability not in CAPABILITIES and capability not in kinds:
            raise UnknownCapability(
                f"unknown capability {capability!r}; twinmesh has: {', '.join(CAPABILITIES)}"
            )
        if capability in kinds:  # an adapter's job kind works on any twin's data
            typed = kinds[capability].validate(inputs)
            twin = self.twin(twin_id)
            cap = kinds[capability]
        else:
            typed = CAPABILITIES[capability].validate(inputs)
            twin = self.twin(twin_id)
            cap = self.capability(twin, capability)
        size = cap.estimate_bytes(self, twin, typed)
        limit = self.settings.max_result_bytes
        if size > limit:
            raise TooLarge(
                f"the {capability} result would be {_mib(size)} and the limit is "
                f"{_mib(limit)} (setting max_result_bytes): ask for fewer members, "
                "regions, days or a smaller area"
            )
        return twin, cap, typed

    def run(
        self,
        twin_id: str,
        capability: str,
        inputs: Mapping[str, Any] | CapabilityInputs | None = None,
        *,
        progress: Progress = no_progress,
        job_id: str | None = None,
    ) -> Result:
        """Compute a capability now, then let it record what it must (issued warnings go
        to the event log)."""
        twin, cap, typed = self.check(twin_id, capability, inputs)
        result = cap.compute(self, twin, typed, progress)
        if cap.record is not None:
            cap.record(self, result, job_id)
        return result

    def submit(
        self,
        twin_id: str,
        capability: str,
        inputs: Mapping[str, Any] | CapabilityInputs | None = None,
        *,
        owner: str | None = None,
    ) -> Job:
        """Validate now, compute later: the job waits in the job store for a worker."""
        _twin, _cap, typed = self.check(twin_id, capability, inputs)
        return self.jobs.submit(twin_id, capability, typed.model_dump(mode="json"), owner=owner)


def _mib(n: int) -> str:
    return f"{n / 1024**2:,.1f} MiB"
