"""The twin capabilities: each declared once (typed inputs, output kind, size) and
computed by a plain function over the engine's store and model registry.

``CAPABILITIES`` is the registry adapters walk: a capability added here appears in
every protocol (OGC API Processes, openEO, gRPC, the CLI) from its declaration, with
no adapter code of its own beyond translation.
"""

from __future__ import annotations

import functools
import logging
from importlib.metadata import entry_points

from twinmesh.core.capabilities.data import SUBSET, SubsetInputs, subset
from twinmesh.core.capabilities.declaration import (
    Capability,
    CapabilityInputs,
    Coverage,
    Features,
    Record,
)
from twinmesh.core.capabilities.early_warning import (
    WARNINGS,
    RegionWarning,
    WarningsInputs,
    issue_warnings,
    warnings,
)
from twinmesh.core.capabilities.hydrology import (
    FORECAST,
    SIMULATE,
    ForecastInputs,
    SimulateInputs,
    forecast,
    simulate,
)
from twinmesh.core.capabilities.verification import VERIFY, VerifyInputs

__all__ = [
    "Capability",
    "CapabilityInputs",
    "Coverage",
    "Features",
    "Record",
    "CAPABILITIES",
    "JOB_KINDS_GROUP",
    "job_kinds",
    "simulate",
    "forecast",
    "warnings",
    "subset",
    "issue_warnings",
    "RegionWarning",
    "SimulateInputs",
    "ForecastInputs",
    "WarningsInputs",
    "SubsetInputs",
    "VerifyInputs",
]

CAPABILITIES: dict[str, Capability] = {
    c.name: c for c in [SIMULATE, FORECAST, WARNINGS, SUBSET, VERIFY]
}

#: Entry-point group of adapters' job kinds: work an adapter defines over the twins'
#: data (e.g. an openEO process graph) that runs as a core job in ``twinmesh worker``
#: like a capability, but is no capability of a twin (adapters do not walk them).
JOB_KINDS_GROUP = "twinmesh.job_kinds"


@functools.cache
def job_kinds() -> dict[str, Capability]:
    """The adapters' job kinds, by name (loaded once per process)."""
    kinds: dict[str, Capability] = {}
    for ep in entry_points(group=JOB_KINDS_GROUP):
        try:
            kind = ep.load()
        except Exception:  # noqa: BLE001 - a broken adapter must not break core's capabilities
            logging.getLogger(__name__).exception("job kind %s could not be loaded", ep.name)
            continue
        if isinstance(kind, Capability) and kind.name not in CAPABILITIES:
            kinds[kind.name] = kind
    return kinds
