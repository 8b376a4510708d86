"""The datacube store: Zarr v3 datacubes and twin documents on any fsspec file system.

Layout under the store root (a local path or an fsspec URL such as ``s3://bucket/x``)::

    <twin>/twin.json                  the twin document (twinmesh.core.twin.Twin)
    <twin>/<dataset>/CURRENT          name of the live version, e.g. ``v20261125T120000-ab12.zarr``
    <twin>/<dataset>/<version>.zarr   an immutable Zarr v3 datacube

Writes are atomic on every file system, object stores included: a new version is
written beside the old one and only then does ``CURRENT`` (one small object,
replaced in a single put or rename) point to it. A crash at any moment leaves the
previous version readable; readers never see a half-written cube.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

import fsspec
import xarray as xr

from twinmesh.core.errors import DataNotReady, InvalidParameter, UnknownDataset, UnknownTwin
from twinmesh.core.twin import Twin

__all__ = ["DatacubeStore"]

_CURRENT = "CURRENT"


def _check_id(kind: str, value: str) -> str:
    if not value or not all(c.isalnum() or c in "-_" for c in value):
        raise InvalidParameter(
            f"{kind} id {value!r} is not valid: use letters, digits, '-' and '_' only"
        )
    return value


class DatacubeStore:
    """Reads and atomically writes twins' datacubes and documents."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        self.root = self.root.rstrip("/")
        self._protocol = (
            self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        )

    # -- paths ---------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _url(self, path: str) -> str:
        """A URL xarray / fsspec can open (plain absolute path for the local disk)."""
        if self._protocol in ("file", "local"):
            return path
        return f"{self._protocol}://{path}"

    # -- twins ---------------------------------------------------------------------
    def twin_ids(self) -> list[str]:
        if not self.fs.exists(self.root):
            return []
        ids = []
        for entry in self.fs.ls(self.root, detail=False):
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if self.fs.exists(self._path(name, "twin.json")):
                ids.append(name)
        return sorted(ids)

    def read_twin(self, twin_id: str) -> Twin:
        path = self._path(_check_id("twin", twin_id), "twin.json")
        if not self.fs.exists(path):
            known = ", ".join(self.twin_ids()) or "none (run `twinmesh demo init`)"
            raise UnknownTwin(f"unknown twin {twin_id!r}; known twins: {known}")
        with self.fs.open(path, "rb") as f:
            return Twin.model_validate_json(f.read())

    def write_twin(self, twin: Twin) -> None:
        self._write_atomic(
            self._path(_check_id("twin", twin.id), "twin.json"),
            twin.model_dump_json(indent=2).encode(),
        )

    def _write_atomic(self, path: str, data: bytes) -> None:
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        if self._protocol in ("file", "local"):
            tmp = f"{path}.tmp-{secrets.token_hex(4)}"
            with self.fs.open(tmp, "wb") as f:
                f.write(data)
            self.fs.mv(tmp, path)  # rename(2): atomic on POSIX
        else:
            with self.fs.open(path, "wb") as f:  # one PUT: atomic on object stores
                f.write(data)

    # -- datacubes -------------------------------------------------------------------
    def version_path(self, twin_id: str, dataset_id: str) -> str:
        """Path of the live version of a datacube; UnknownDataset if there is none."""
        current = self._path(_check_id("twin", twin_id), _check_id("dataset", dataset_id), _CURRENT)
        if not self.fs.exists(current):
            if not self.fs.exists(self._path(twin_id, "twin.json")):
                if not self.twin_ids():
                    raise DataNotReady(
                        f"the store at {self.url} holds no twins yet: run `twinmesh demo init`"
                    )
                raise UnknownTwin(
                    f"unknown twin {twin_id!r}; known twins: {', '.join(self.twin_ids())}"
                )
            raise UnknownDataset(f"twin {twin_id!r} has no datacube {dataset_id!r} in the store")
        with self.fs.open(current, "rb") as f:
            version = f.read().decode().strip()
        return self._path(twin_id, dataset_id, version)

    def dataset_url(self, twin_id: str, dataset_id: str) -> str:
        """URL of the live Zarr version, as published in STAC asset hrefs."""
        return self._url(self.version_path(twin_id, dataset_id))

    def has_dataset(self, twin_id: str, dataset_id: str) -> bool:
        return self.fs.exists(self._path(twin_id, dataset_id, _CURRENT))

    def open(self, twin_id: str, dataset_id: str) -> xr.Dataset:
        """Open the live version lazily (dask-backed)."""
        return xr.open_zarr(
            self._url(self.version_path(twin_id, dataset_id)),
            consolidated=False,
            zarr_format=3,
            storage_options=self.storage_options or None,
        )

    def write(self, twin_id: str, dataset_id: str, ds: xr.Dataset) -> str:
        """Write ``ds`` as a new version and make it live; return its URL.

        The previous version is kept until the next write, so a reader that opened
        it just before the swap can finish; older ones are removed.
        """
        base = self._path(_check_id("twin", twin_id), _check_id("dataset", dataset_id))
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        version = f"v{stamp}-{secrets.token_hex(3)}.zarr"
        target = f"{base}/{version}"
        self.fs.makedirs(base, exist_ok=True)
        previous = None
        if self.fs.exists(f"{base}/{_CURRENT}"):
            with self.fs.open(f"{base}/{_CURRENT}", "rb") as f:
                previous = f.read().decode().strip()
        ds.to_zarr(
            self._url(target),
            mode="w-",
            zarr_format=3,
            consolidated=False,
            storage_options=self.storage_options or None,
        )
        self._write_atomic(f"{base}/{_CURRENT}", version.encode())
        for entry in self.fs.ls(base, detail=False):
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if name.endswith(".zarr") and name not in (version, previous):
                self.fs.rm(entry, recursive=True)
        return self._url(target)

    def write_json(self, twin_id: str, name: str, obj: Any) -> None:
        """Store a small JSON document of a twin (e.g. model state) atomically."""
        self._write_atomic(
            self._path(_check_id("twin", twin_id), name),
            json.dumps(obj, indent=2, default=str).encode(),
        )

    def read_json(self, twin_id: str, name: str) -> Any:
        path = self._path(_check_id("twin", twin_id), name)
        if not self.fs.exists(path):
            raise UnknownDataset(f"twin {twin_id!r} has no document {name!r}")
        with self.fs.open(path, "rb") as f:
            return json.loads(f.read())
