"""The twin capabilities: each declared once (typed inputs, output kind, size) and
computed by a plain function over the engine's store and model registry.

``CAPABILITIES`` is the registry adapters walk: a capability added here appears in
every protocol (OGC API Processes, openEO, gRPC, the CLI) from its declaration, with
no adapter code of its own beyond translation.
"""

from __future__ import annotations

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
