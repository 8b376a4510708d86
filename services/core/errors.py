"""Typed errors of the twin core.

Every adapter maps these onto its protocol's own error shape (OGC exception, openEO
error object, gRPC status, STAC API error); the ``code`` is stable and machine-readable,
the message says what was wrong and what would be right.
"""

from __future__ import annotations

__all__ = [
    "TwinmeshError",
    "NotFoundError",
    "UnknownTwin",
    "UnknownDataset",
    "UnknownRegion",
    "InvalidInput",
    "OutOfExtent",
    "InvalidTimeRange",
    "InvalidParameter",
    "DataNotReady",
    "UnknownCapability",
    "CapabilityNotOffered",
    "UnknownJob",
    "TooLarge",
    "JobNotFinished",
]


class TwinmeshError(Exception):
    """Base of every error the core raises on purpose."""

    code = "TwinmeshError"
    #: HTTP-like status an adapter should answer with.
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(TwinmeshError):
    code = "NotFound"
    status = 404


class UnknownTwin(NotFoundError):
    code = "UnknownTwin"


class UnknownDataset(NotFoundError):
    code = "UnknownDataset"


class UnknownRegion(NotFoundError):
    code = "UnknownRegion"


class InvalidInput(TwinmeshError):
    code = "InvalidInput"
    status = 400


class OutOfExtent(InvalidInput):
    code = "OutOfExtent"


class InvalidTimeRange(InvalidInput):
    code = "InvalidTimeRange"


class InvalidParameter(InvalidInput):
    code = "InvalidParameter"


class DataNotReady(TwinmeshError):
    """The store has not been initialised (run ``twinmesh demo init``)."""

    code = "DataNotReady"
    status = 503


class UnknownCapability(NotFoundError):
    code = "UnknownCapability"


class CapabilityNotOffered(NotFoundError):
    """The twin exists but does not declare that capability."""

    code = "CapabilityNotOffered"


class UnknownJob(NotFoundError):
    code = "UnknownJob"


class TooLarge(InvalidInput):
    """The result would exceed ``max_result_bytes``; refused before any data is read."""

    code = "TooLarge"
    status = 413


class JobNotFinished(TwinmeshError):
    """The job has no result yet (or failed / was dismissed)."""

    code = "JobNotFinished"
    status = 409
