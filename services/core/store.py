"""The datacube store: Zarr v3 datacubes and twin documents on any fsspec file system.

Layout under the store root (a local path or an fsspec URL such as ``s3://bucket/x``)::

    <twin>/twin.json                  the twin document (twinmesh.core.twin.Twin)
    <twin>/twin.json.lock             lock file of ``update_twin`` (local disk only)
    <twin>/<dataset>/CURRENT          name of the live version (``v20261125T120000-ab12cd.zarr``)
    <twin>/<dataset>/PREVIOUS         name of the version that was live before it
    <twin>/<dataset>/PINS/<holder>    a version someone still points at (e.g. a STAC item)
    <twin>/<dataset>/<version>.zarr   an immutable Zarr v3 datacube

Writes are atomic on every file system, object stores included: a new version is
written beside the old one and only then does ``CURRENT`` (one small object,
replaced in a single put or rename) point to it. A crash at any moment leaves the
previous version readable; readers never see a half-written cube.

Old versions go by garbage collection (``gc``), never by a writer deleting what it
did not write: a version is removed only when it is neither live nor the previous
live one, nor pinned, and older than a minimum age. The age is read from the UTC
timestamp in the version's name, so a version another writer is still writing is
young and safe, and a reader that opened a version just before a swap can finish.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import fsspec
import xarray as xr

from twinmesh.core.errors import DataNotReady, InvalidParameter, UnknownDataset, UnknownTwin
from twinmesh.core.twin import Twin

__all__ = ["DatacubeStore", "GC_MIN_AGE_SECONDS"]

_log = logging.getLogger(__name__)

_CURRENT = "CURRENT"
_PREVIOUS = "PREVIOUS"
_PINS = "PINS"
_TWIN_DOC = "twin.json"

#: Versions younger than this survive the garbage collection every ``write`` runs: a
#: write that takes longer could lose its half-written version to another writer's gc.
GC_MIN_AGE_SECONDS = 3600.0

#: ``v<UTC timestamp>-<random hex>.zarr``, as ``DatacubeStore.write`` names versions.
_VERSION = re.compile(r"^v(\d{8}T\d{6})-[0-9a-f]+\.zarr$")
_STAMP = "%Y%m%dT%H%M%S"

#: Compare-and-swap attempts of ``update_twin`` on file systems without a lock.
_CAS_ATTEMPTS = 20

#: The memory file system lives in one process, so one lock there is exact.
_MEMORY_TWIN_LOCK = threading.Lock()


def _check_id(kind: str, value: str) -> str:
    if not value or not all(c.isalnum() or c in "-_" for c in value):
        raise InvalidParameter(
            f"{kind} id {value!r} is not valid: use letters, digits, '-' and '_' only"
        )
    return value


def _version_time(version: str) -> datetime | None:
    """When a version was started (UTC), from its name; None if it is not a version."""
    match = _VERSION.match(version)
    if match is None:
        return None
    return datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC)


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
        if self._is_local:
            return path
        return f"{self._protocol}://{path}"

    @property
    def _is_local(self) -> bool:
        return self._protocol in ("file", "local")

    def _dataset_path(self, twin_id: str, dataset_id: str) -> str:
        return self._path(_check_id("twin", twin_id), _check_id("dataset", dataset_id))

    def _read_text(self, path: str) -> str | None:
        """A small file's text, or None when it does not exist."""
        try:
            with self.fs.open(path, "rb") as f:
                return f.read().decode().strip()
        except FileNotFoundError:
            return None

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
        """Replace a twin's document (a blind write; use ``update_twin`` to change one)."""
        path = self._path(_check_id("twin", twin.id), _TWIN_DOC)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self._twin_lock(path):
            self._write_atomic(path, twin.model_dump_json(indent=2).encode())

    def update_twin(self, twin_id: str, change: Callable[[Twin], Twin]) -> Twin:
        """Read a twin's document, apply ``change`` and write the result; return it.

        On the local disk an exclusive ``flock`` on ``twin.json.lock`` is held across
        the read, the change and the atomic write, so concurrent updates from threads
        and processes never lose one another. The memory file system takes a lock of
        the process. Object stores (s3, ...) have no lock: there the update is a
        best-effort compare-and-swap, re-reading the document just before the write
        and starting again if it changed, which leaves a window of one PUT in which
        a concurrent update can still be lost. ``change`` may run more than once and
        must not have side effects.
        """
        path = self._path(_check_id("twin", twin_id), _TWIN_DOC)
        if not self.fs.exists(path):
            self.read_twin(twin_id)  # UnknownTwin naming the known twins
        if self._is_local or self._protocol == "memory":
            with self._twin_lock(path):
                twin = self._changed_twin(twin_id, self._twin_bytes(twin_id, path), change)
                self._write_atomic(path, twin.model_dump_json(indent=2).encode())
                return twin
        for _ in range(_CAS_ATTEMPTS):
            before = self._twin_bytes(twin_id, path)
            twin = self._changed_twin(twin_id, before, change)
            if self._twin_bytes(twin_id, path) != before:
                time.sleep(random.uniform(0.01, 0.1))
                continue
            self._write_atomic(path, twin.model_dump_json(indent=2).encode())
            return twin
        raise RuntimeError(
            f"twin {twin_id!r} changed under every one of {_CAS_ATTEMPTS} update attempts; "
            "too many concurrent writers: try again"
        )

    def _twin_bytes(self, twin_id: str, path: str) -> bytes:
        try:
            with self.fs.open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            self.read_twin(twin_id)  # UnknownTwin naming the known twins
            raise

    @staticmethod
    def _changed_twin(twin_id: str, data: bytes, change: Callable[[Twin], Twin]) -> Twin:
        twin = change(Twin.model_validate_json(data))
        if not isinstance(twin, Twin) or twin.id != twin_id:
            raise InvalidParameter(
                f"an update of twin {twin_id!r} must return that twin (a Twin with id "
                f"{twin_id!r}, e.g. from model_copy), got {getattr(twin, 'id', twin)!r}"
            )
        return twin

    @contextmanager
    def _twin_lock(self, path: str) -> Iterator[None]:
        """Exclusive access to a twin's document where the file system allows it."""
        if self._protocol == "memory":
            with _MEMORY_TWIN_LOCK:
                yield
            return
        if not self._is_local or sys.platform == "win32":
            yield
            return
        import fcntl

        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

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
    def live_version(self, twin_id: str, dataset_id: str) -> str:
        """Name of the live version of a datacube; UnknownDataset if there is none."""
        version = self._read_text(f"{self._dataset_path(twin_id, dataset_id)}/{_CURRENT}")
        if version is None:
            if not self.fs.exists(self._path(twin_id, _TWIN_DOC)):
                if not self.twin_ids():
                    raise DataNotReady(
                        f"the store at {self.url} holds no twins yet: run `twinmesh demo init`"
                    )
                raise UnknownTwin(
                    f"unknown twin {twin_id!r}; known twins: {', '.join(self.twin_ids())}"
                )
            raise UnknownDataset(f"twin {twin_id!r} has no datacube {dataset_id!r} in the store")
        return version

    def version_path(self, twin_id: str, dataset_id: str) -> str:
        """Path of the live version of a datacube; UnknownDataset if there is none."""
        return self._path(twin_id, dataset_id, self.live_version(twin_id, dataset_id))

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

        The version is written under a new name and ``CURRENT`` is swapped last, so
        concurrent writers never touch each other's versions (the last swap wins).
        Afterwards old versions are garbage collected (``gc`` with
        ``GC_MIN_AGE_SECONDS``); a failure there is logged, never the write's.
        """
        base = self._dataset_path(twin_id, dataset_id)
        stamp = datetime.now(UTC).strftime(_STAMP)
        version = f"v{stamp}-{secrets.token_hex(3)}.zarr"
        target = f"{base}/{version}"
        self.fs.makedirs(base, exist_ok=True)
        self.write_zarr_at(target, ds)
        previous = self._read_text(f"{base}/{_CURRENT}")
        if previous and previous != version:
            self._write_atomic(f"{base}/{_PREVIOUS}", previous.encode())
        self._write_atomic(f"{base}/{_CURRENT}", version.encode())
        try:
            self.gc(twin_id, dataset_id, min_age_seconds=GC_MIN_AGE_SECONDS)
        except OSError as exc:
            _log.warning("garbage collection of %s/%s failed: %s", twin_id, dataset_id, exc)
        return self._url(target)

    def versions(self, twin_id: str, dataset_id: str) -> list[str]:
        """Names of every version of a datacube in the store, oldest first."""
        base = self._dataset_path(twin_id, dataset_id)
        try:
            entries = self.fs.ls(base, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        names = (entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries)
        return sorted(name for name in names if _VERSION.match(name))

    def gc(
        self, twin_id: str, dataset_id: str, *, min_age_seconds: float = GC_MIN_AGE_SECONDS
    ) -> list[str]:
        """Remove the versions nobody can still need; return their names.

        Kept: the live version, the previous live one (a reader may have opened it
        just before the swap), pinned ones, and every version younger than
        ``min_age_seconds`` by the timestamp in its name (another writer may still be
        writing it). Safe to run from several processes at once.
        """
        base = self._dataset_path(twin_id, dataset_id)
        keep = {
            self._read_text(f"{base}/{_CURRENT}"),
            self._read_text(f"{base}/{_PREVIOUS}"),
            *self.pins(twin_id, dataset_id).values(),
        }
        now = datetime.now(UTC)
        removed = []
        for version in self.versions(twin_id, dataset_id):
            started = _version_time(version)
            if version in keep or started is None:
                continue
            if (now - started).total_seconds() < min_age_seconds:
                continue
            if version in self.pins(twin_id, dataset_id).values():  # pinned meanwhile
                continue
            try:
                self.fs.rm(f"{base}/{version}", recursive=True)
            except FileNotFoundError:
                continue  # another gc was faster
            removed.append(version)
        return removed

    def _version_name(self, twin_id: str, dataset_id: str, version_or_url: str) -> str:
        """The version name in a version name, path or URL of this datacube."""
        base = self._dataset_path(twin_id, dataset_id)
        text = version_or_url.rstrip("/")
        name = text.rsplit("/", 1)[-1]
        if "/" in text:
            parent = self.fs._strip_protocol(text).rstrip("/").rsplit("/", 1)[0]
            if parent != base:
                raise InvalidParameter(
                    f"{version_or_url!r} is not a version of {twin_id}/{dataset_id}: "
                    f"its versions live under {self._url(base)}"
                )
        if not _VERSION.match(name):
            raise InvalidParameter(
                f"{version_or_url!r} is not a datacube version: expected a name like "
                "v20261125T120000-ab12cd.zarr or the URL `write` returned"
            )
        return name

    def pin(self, twin_id: str, dataset_id: str, version_or_url: str, holder: str) -> str:
        """Keep a version from garbage collection while ``holder`` points at it.

        A holder (e.g. ``stac``) pins one version per datacube: pinning another one
        replaces its pin. Accepts a version name or the URL ``write`` / ``dataset_url``
        returned; returns the version name. UnknownDataset if the version is gone.
        """
        version = self._version_name(twin_id, dataset_id, version_or_url)
        base = self._dataset_path(twin_id, dataset_id)
        pin_path = f"{base}/{_PINS}/{_check_id('holder', holder)}"
        self._write_atomic(pin_path, version.encode())
        if not self.fs.exists(f"{base}/{version}"):  # checked after pinning: gc may race
            self.fs.rm(pin_path)
            raise UnknownDataset(
                f"twin {twin_id!r} has no version {version!r} of {dataset_id!r} to pin"
            )
        return version

    def unpin(self, twin_id: str, dataset_id: str, holder: str) -> bool:
        """Drop ``holder``'s pin on a datacube; False if it held none."""
        base = self._dataset_path(twin_id, dataset_id)
        path = f"{base}/{_PINS}/{_check_id('holder', holder)}"
        try:
            self.fs.rm(path)
        except FileNotFoundError:
            return False
        return True

    def pins(self, twin_id: str, dataset_id: str) -> dict[str, str]:
        """Holder -> pinned version name of a datacube."""
        folder = f"{self._dataset_path(twin_id, dataset_id)}/{_PINS}"
        try:
            entries = self.fs.ls(folder, detail=False, refresh=True)
        except FileNotFoundError:
            return {}
        pins = {}
        for entry in entries:
            holder = entry.rstrip("/").rsplit("/", 1)[-1]
            if ".tmp-" in holder:
                continue  # a pin being written
            version = self._read_text(entry)
            if version:
                pins[holder] = version
        return pins

    # -- job results -------------------------------------------------------------------
    def result_path(self, twin_id: str, job_id: str, attempt: str) -> str:
        """Folder of one attempt of a job's result: ``<twin>/results/<job>/<attempt>``.

        Results are written once and never rewritten: a retried job gets a new attempt
        folder, so a reader holding an older one is never disturbed."""
        return self._path(
            _check_id("twin", twin_id),
            "results",
            _check_id("job", job_id),
            _check_id("attempt", attempt),
        )

    def write_zarr_at(self, path: str, ds: xr.Dataset) -> None:
        """Write ``ds`` as a new Zarr v3 store at ``path`` (refusing to overwrite one)."""
        ds.to_zarr(
            self._url(path),
            mode="w-",
            zarr_format=3,
            consolidated=False,
            storage_options=self.storage_options or None,
        )

    def url_of(self, path: str) -> str:
        """A URL xarray / fsspec can open for a path inside this store."""
        return self._url(path)

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
