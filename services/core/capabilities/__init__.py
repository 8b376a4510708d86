"""The twin capabilities, as plain functions over the store.

``CAPABILITIES`` is the registry adapters walk: a capability added here appears in
every protocol (OGC API Processes, openEO, gRPC) without adapter code of its own
beyond translation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twinmesh.core.capabilities.data import subset
from twinmesh.core.capabilities.hydrology import forecast, simulate
from twinmesh.core.capabilities.warnings import RegionWarning, issue_warnings, warnings

__all__ = [
    "Capability",
    "CAPABILITIES",
    "simulate",
    "forecast",
    "warnings",
    "subset",
    "issue_warnings",
    "RegionWarning",
]


@dataclass(frozen=True)
class Capability:
    """A named twin capability and the function that computes it."""

    name: str
    title: str
    description: str
    function: Callable[..., Any]


CAPABILITIES: dict[str, Capability] = {
    c.name: c
    for c in [
        Capability(
            "simulate",
            "Simulate discharge",
            "Run the twin's calibrated model for a period under a precipitation scenario.",
            simulate,
        ),
        Capability(
            "forecast",
            "Ensemble discharge forecast",
            "Ensemble of N members from perturbed forcing, lead time L days, from an issue day.",
            forecast,
        ),
        Capability(
            "warnings",
            "Flood and drought early warnings",
            "Per region: flood level from 2/5/20-year return levels exceeded by at least 30% of "
            "members, their probabilities, and a drought level from SPI-3.",
            warnings,
        ),
        Capability(
            "subset",
            "Datacube subset",
            "The part of a twin's datacube inside a bbox and a time range.",
            subset,
        ),
    ]
}
