"""The model registry: every calibrated model of a twin, versioned, with its skill and
provenance, and a ``current`` alias that says which version the twin runs.

Why: a twin's model changes (recalibration, a federated training round, a new
architecture); forecasts and warnings must say which model made them, a bad model must
be replaceable by the previous one in one step, and a model's origin (data, method,
code, federation partners) must be answerable later. The twin document (``twin.json``)
holds only a snapshot; the registry holds the history, in the job/model database
(``twinmesh.core.db``: tables ``models``, ``model_aliases``, ``model_alias_history``).

Concurrency: every write runs in one transaction that first serialises the writers of
the same twin (SQLite: ``BEGIN IMMEDIATE`` takes the write lock; PostgreSQL: a
transaction-scoped advisory lock on the twin), so two registrations never get the same
version and an alias switch is never half done.
"""

from __future__ import annotations

import importlib.metadata
import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy import Connection, Row, func, insert, select, text, update

from twinmesh.core.db import Database, alias_history, model_aliases, utcnow
from twinmesh.core.db import models as models_table
from twinmesh.core.errors import InvalidParameter, NotFoundError, TwinmeshError
from twinmesh.core.twin import ModelInfo, Twin

__all__ = [
    "CURRENT",
    "DEFAULT_METHOD",
    "UnknownModelVersion",
    "NothingToRollBack",
    "PeriodSkill",
    "ModelSkill",
    "TrainingData",
    "FederatedProvenance",
    "ModelProvenance",
    "ModelVersion",
    "AliasSwitch",
    "ModelRegistry",
    "installed_version",
    "skill_from_document",
]

#: The alias a twin runs with; ``approve`` and ``roll_back`` move it.
CURRENT = "current"

#: How the models of a twin document were made when the document does not say.
DEFAULT_METHOD = "SCE-UA calibration"

#: Advisory-lock class of the registry on PostgreSQL (``Database.migrate`` uses 7416533
#: with the one-key form; two-key locks never conflict with one-key locks).
_PG_LOCK_CLASS = 7416534

_PERIOD = re.compile(r"^([0-9]{4}-[0-9]{2}-[0-9]{2})/([0-9]{4}-[0-9]{2}-[0-9]{2})$")
_DIGITS = re.compile(r"^[0-9]+$")


class UnknownModelVersion(NotFoundError):
    """No such version or alias; ``known`` lists the versions the twin has."""

    code = "UnknownModelVersion"

    def __init__(self, message: str, known: list[int] | None = None) -> None:
        super().__init__(message)
        self.known = list(known or [])


class NothingToRollBack(TwinmeshError):
    """``current`` was never switched away from a previous version."""

    code = "NothingToRollBack"
    status = 409


def installed_version() -> str:
    """The installed twinmesh version: the code a model is registered with."""
    try:
        return importlib.metadata.version("twinmesh")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class PeriodSkill(BaseModel):
    """Skill on one period (calibration or validation); more metrics may be added as
    extra numeric fields (``{"kge": .., "nse": .., "pbias": ..}``)."""

    model_config = ConfigDict(frozen=True, extra="allow", allow_inf_nan=False)

    #: ``YYYY-MM-DD/YYYY-MM-DD``, both days included.
    period: str
    kge: float
    nse: float

    @field_validator("period")
    @classmethod
    def _period_is_an_interval(cls, value: str) -> str:
        match = _PERIOD.match(value)
        if match is None:
            raise ValueError(f"period {value!r} is not YYYY-MM-DD/YYYY-MM-DD")
        start, end = (date.fromisoformat(part) for part in match.groups())
        if end < start:
            raise ValueError(f"period {value!r} ends before it starts")
        return value

    @model_validator(mode="after")
    def _extra_metrics_are_numbers(self) -> PeriodSkill:
        for name, value in (self.model_extra or {}).items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"metric {name!r} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"metric {name!r} must be finite, got {value!r}")
        return self


class ModelSkill(_Frozen):
    """Measured skill: the whole model's, and each region's when it has its own."""

    calibration: PeriodSkill | None = None
    validation: PeriodSkill | None = None
    #: How ``calibration``/``validation`` summarise regions (e.g. "median over regions").
    aggregate: str | None = None
    #: Region id -> "calibration"/"validation" -> skill.
    regions: dict[str, dict[str, PeriodSkill]] = Field(default_factory=dict)


class TrainingData(_Frozen):
    """One dataset a model learnt from, at the version it was read."""

    dataset: str = Field(min_length=1)
    version: str | None = None


class FederatedProvenance(_Frozen):
    """How a federated model was trained: rounds, partners and their sample counts."""

    rounds: int = Field(ge=1)
    #: Node id -> number of training samples it contributed.
    partners: dict[str, int] = Field(min_length=1)
    #: Aggregation strategy, e.g. "FedAvg".
    strategy: str = Field(min_length=1)

    @field_validator("partners")
    @classmethod
    def _samples_are_counts(cls, value: dict[str, int]) -> dict[str, int]:
        negative = [node for node, n in value.items() if n < 0]
        if negative:
            raise ValueError(f"sample counts must be >= 0; negative for: {', '.join(negative)}")
        return value


class ModelProvenance(_Frozen):
    """Where a model came from: data, method, code, and the federation if any."""

    training_data: list[TrainingData] = Field(default_factory=list)
    method: str = Field(min_length=1)
    code_version: str = Field(default_factory=installed_version)
    federated: FederatedProvenance | None = None
    #: Settings a rerun of ``method`` needs (e.g. SCE-UA repetitions and seed).
    method_settings: dict[str, int | float | str | bool] = Field(default_factory=dict)
    notes: str = ""


class ModelVersion(_Frozen):
    """One registered version of a twin's model."""

    twin: str = Field(min_length=1, max_length=128)
    version: int = Field(ge=1)
    kind: str = Field(min_length=1, max_length=64)
    description: str = ""
    #: Parameters shared by every region ...
    parameters: dict[str, float]
    #: ... unless a region has its own (the same names, calibrated on its own gauge).
    region_parameters: dict[str, dict[str, float]] = Field(default_factory=dict)
    #: Store path of an artifact (weights, a file) when parameters are not enough.
    artifact: str | None = None
    skill: ModelSkill
    provenance: ModelProvenance
    created: datetime
    approved: bool = False

    @field_validator("created")
    @classmethod
    def _created_is_utc(cls, value: datetime) -> datetime:
        # SQLite hands back naive datetimes; the registry writes UTC only.
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _regions_have_the_model_parameters(self) -> ModelVersion:
        names = sorted(self.parameters)
        for region, params in self.region_parameters.items():
            if sorted(params) != names:
                raise ValueError(
                    f"region {region!r} has parameters {sorted(params)}; a region's "
                    f"parameters replace the shared ones, so they must be {names}"
                )
        return self

    def parameters_for(self, region_id: str) -> dict[str, float]:
        """The parameters the model runs with in one region."""
        return self.region_parameters.get(region_id, self.parameters)

    @property
    def ref(self) -> str:
        """A stable, readable reference, e.g. ``fulda/gr4j@3`` (jobs record it)."""
        return f"{self.twin}/{self.kind.lower()}@{self.version}"


class AliasSwitch(_Frozen):
    """One move of an alias: which version it pointed to from when, and why."""

    alias: str
    version: int
    switched: datetime
    reason: str = ""

    @field_validator("switched")
    @classmethod
    def _switched_is_utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def skill_from_document(skill: Mapping[str, Any]) -> tuple[ModelSkill, dict[str, Any]]:
    """Split a twin document's skill dict into a ``ModelSkill`` and the rest.

    The document's dicts differ from ``ModelSkill`` in three ways: ``aggregate`` sits
    inside each period, region periods carry no ``period`` (it is the model's), and
    calibration settings (``repetitions``, ``seed``) sit beside the skill; those are
    returned as the second value, for ``ModelProvenance.method_settings``.
    """
    rest = {k: v for k, v in skill.items() if k not in ("calibration", "validation", "regions")}
    aggregate = rest.pop("aggregate", None)
    periods: dict[str, dict[str, Any]] = {}
    for name in ("calibration", "validation"):
        value = skill.get(name)
        if value is None:
            continue
        period = dict(value)
        aggregate = period.pop("aggregate", aggregate)
        periods[name] = period
    regions: dict[str, dict[str, dict[str, Any]]] = {}
    for region, by_period in (skill.get("regions") or {}).items():
        regions[region] = {}
        for name, value in by_period.items():
            period = dict(value)
            if "period" not in period and name in periods and "period" in periods[name]:
                period["period"] = periods[name]["period"]
            regions[region][name] = period
    model_skill = ModelSkill.model_validate({**periods, "aggregate": aggregate, "regions": regions})
    return model_skill, rest


def _parse_created(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return utcnow()
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "model"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


class ModelRegistry:
    """Versions, approval and roll-back of the models of every twin, in one database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- reading -----------------------------------------------------------------------

    def versions(self, twin_id: str) -> list[ModelVersion]:
        """Every version of the twin's model, oldest first ([] for an unknown twin)."""
        with self._db.read() as conn:
            rows = conn.execute(
                select(models_table)
                .where(models_table.c.twin == twin_id)
                .order_by(models_table.c.version)
            ).all()
        return [_version_from_row(row) for row in rows]

    def current_version(self, twin_id: str) -> int | None:
        """The version ``current`` points to, or None while none is approved."""
        with self._db.read() as conn:
            return self._alias(conn, twin_id, CURRENT)

    def get(self, twin_id: str, version: int | str = CURRENT) -> ModelVersion:
        """One version: by number (``3`` or ``"3"``), or by alias (``"current"``)."""
        with self._db.read() as conn:
            number = self._resolve(conn, twin_id, version)
            return self._fetch(conn, twin_id, number)

    def history(self, twin_id: str) -> list[AliasSwitch]:
        """Every alias switch of the twin, oldest first."""
        with self._db.read() as conn:
            rows = conn.execute(
                select(alias_history)
                .where(alias_history.c.twin == twin_id)
                .order_by(alias_history.c.id)
            ).all()
        return [
            AliasSwitch(alias=r.alias, version=r.version, switched=r.switched, reason=r.reason)
            for r in rows
        ]

    # -- writing -----------------------------------------------------------------------

    def register(
        self,
        twin_id: str,
        *,
        kind: str,
        parameters: Mapping[str, float],
        region_parameters: Mapping[str, Mapping[str, float]] | None = None,
        skill: ModelSkill | Mapping[str, Any],
        provenance: ModelProvenance | Mapping[str, Any],
        description: str = "",
        artifact: str | None = None,
        approve: bool = False,
    ) -> ModelVersion:
        """Add the next version of the twin's model (1, 2, ...); ``approve=True`` also
        makes it ``current`` in the same transaction."""
        with self._db.begin() as conn:
            self._lock(conn, twin_id)
            registered = self._insert(
                conn,
                twin_id,
                kind=kind,
                parameters=parameters,
                region_parameters=region_parameters or {},
                skill=skill,
                provenance=provenance,
                description=description,
                artifact=artifact,
                created=utcnow(),
            )
            if approve:
                registered = self._approve(
                    conn, twin_id, registered.version, "approved at registration"
                )
            return registered

    def approve(self, twin_id: str, version: int | str, *, reason: str = "") -> ModelVersion:
        """Mark a version approved and make it ``current``, atomically, recording the
        switch. Approving the version that is already current changes nothing."""
        with self._db.begin() as conn:
            self._lock(conn, twin_id)
            number = self._resolve(conn, twin_id, version)
            return self._approve(conn, twin_id, number, reason)

    def roll_back(self, twin_id: str, *, reason: str = "") -> ModelVersion:
        """Undo the last switch of ``current``: point it at the version it pointed at
        before. A second roll-back undoes the first (it is a switch too)."""
        with self._db.begin() as conn:
            self._lock(conn, twin_id)
            rows = conn.execute(
                select(alias_history.c.version)
                .where(alias_history.c.twin == twin_id, alias_history.c.alias == CURRENT)
                .order_by(alias_history.c.id.desc())
                .limit(2)
            ).all()
            if len(rows) < 2:
                raise NothingToRollBack(
                    f"twin {twin_id!r}: {CURRENT!r} has never been switched from an earlier "
                    "version, so there is nothing to roll back to; approve a version instead"
                )
            now, previous = rows[0].version, rows[1].version
            note = f"roll back from version {now}" + (f": {reason}" if reason else "")
            self._switch(conn, twin_id, CURRENT, previous, note)
            return self._fetch(conn, twin_id, previous)

    def seed_from_twin(self, twin: Twin) -> list[ModelVersion]:
        """Register the models of a twin document when the registry has none for the
        twin, approving the first; otherwise register nothing. Safe to call from any
        number of processes at once: the check and the writes are one transaction."""
        if not twin.models:
            return []
        with self._db.begin() as conn:
            self._lock(conn, twin.id)
            if self._known_versions(conn, twin.id):
                return []
            seeded = [self._insert_model_info(conn, twin.id, info) for info in twin.models]
            seeded[0] = self._approve(
                conn, twin.id, seeded[0].version, "registered from the twin document"
            )
            return seeded

    def adopt_from_twin(self, twin: Twin, *, reason: str) -> ModelVersion | None:
        """After a twin was rebuilt: register its document's first model as a new version
        and approve it, unless the current version already is that model (same kind and
        parameters). A twin without registered versions is seeded instead. Returns the
        new current version, or None when nothing changed."""
        if not twin.models:
            return None
        info = twin.models[0]
        with self._db.begin() as conn:
            self._lock(conn, twin.id)
            if not self._known_versions(conn, twin.id):
                first = self._insert_model_info(conn, twin.id, info)
                return self._approve(
                    conn, twin.id, first.version, "registered from the twin document"
                )
            current = self._alias(conn, twin.id, CURRENT)
            if current is not None:
                now = self._fetch(conn, twin.id, current)
                same = (
                    now.kind == info.kind
                    and now.parameters == info.parameters
                    and now.region_parameters == info.region_parameters
                )
                if same:
                    return None
            added = self._insert_model_info(conn, twin.id, info)
            return self._approve(conn, twin.id, added.version, reason)

    # -- inside a transaction ----------------------------------------------------------

    def _lock(self, conn: Connection, twin_id: str) -> None:
        """Serialise the writers of one twin. SQLite's BEGIN IMMEDIATE already holds the
        database's write lock; PostgreSQL needs a lock of its own (rows to lock may not
        exist yet), released at commit."""
        if self._db.is_postgres:
            conn.execute(
                text(f"SELECT pg_advisory_xact_lock({_PG_LOCK_CLASS}, hashtext(:twin))"),
                {"twin": twin_id},
            )

    def _known_versions(self, conn: Connection, twin_id: str) -> list[int]:
        return list(
            conn.scalars(
                select(models_table.c.version)
                .where(models_table.c.twin == twin_id)
                .order_by(models_table.c.version)
            )
        )

    def _alias(self, conn: Connection, twin_id: str, alias: str) -> int | None:
        return conn.scalar(
            select(model_aliases.c.version).where(
                model_aliases.c.twin == twin_id, model_aliases.c.alias == alias
            )
        )

    def _unknown(self, conn: Connection, twin_id: str, what: str) -> UnknownModelVersion:
        known = self._known_versions(conn, twin_id)
        if not known:
            return UnknownModelVersion(
                f"twin {twin_id!r} has no registered model versions, so no {what}", known
            )
        current = self._alias(conn, twin_id, CURRENT)
        listed = ", ".join(str(v) for v in known)
        state = f"current: {current}" if current is not None else "none approved as current"
        return UnknownModelVersion(
            f"twin {twin_id!r} has no model {what}; its versions are: {listed} ({state})",
            known,
        )

    def _resolve(self, conn: Connection, twin_id: str, version: int | str) -> int:
        """A version number from a number, a digit string or an alias name."""
        if isinstance(version, bool) or not isinstance(version, int | str):
            raise InvalidParameter(
                f"model version must be a number or an alias such as {CURRENT!r}, got {version!r}"
            )
        if isinstance(version, int) or _DIGITS.match(version):
            number = int(version)
            exists = conn.scalar(
                select(func.count())
                .select_from(models_table)
                .where(models_table.c.twin == twin_id, models_table.c.version == number)
            )
            if not exists:
                raise self._unknown(conn, twin_id, f"version {number}")
            return number
        aliased = self._alias(conn, twin_id, version)
        if aliased is None:
            raise self._unknown(conn, twin_id, f"version with alias {version!r}")
        return aliased

    def _fetch(self, conn: Connection, twin_id: str, number: int) -> ModelVersion:
        row = conn.execute(
            select(models_table).where(
                models_table.c.twin == twin_id, models_table.c.version == number
            )
        ).one_or_none()
        if row is None:
            raise self._unknown(conn, twin_id, f"version {number}")
        return _version_from_row(row)

    def _insert(
        self,
        conn: Connection,
        twin_id: str,
        *,
        kind: str,
        parameters: Mapping[str, float],
        region_parameters: Mapping[str, Mapping[str, float]],
        skill: ModelSkill | Mapping[str, Any],
        provenance: ModelProvenance | Mapping[str, Any],
        description: str,
        artifact: str | None,
        created: datetime,
    ) -> ModelVersion:
        latest = conn.scalar(
            select(func.max(models_table.c.version)).where(models_table.c.twin == twin_id)
        )
        try:
            model = ModelVersion.model_validate(
                {
                    "twin": twin_id,
                    "version": (latest or 0) + 1,
                    "kind": kind,
                    "description": description,
                    "parameters": dict(parameters),
                    "region_parameters": {r: dict(p) for r, p in region_parameters.items()},
                    "artifact": artifact,
                    "skill": skill if isinstance(skill, ModelSkill) else dict(skill),
                    "provenance": (
                        provenance if isinstance(provenance, ModelProvenance) else dict(provenance)
                    ),
                    "created": created,
                    "approved": False,
                }
            )
        except ValidationError as exc:
            raise InvalidParameter(
                f"model for twin {twin_id!r} is not valid: {_describe(exc)}"
            ) from None
        conn.execute(
            insert(models_table).values(
                twin=model.twin,
                version=model.version,
                kind=model.kind,
                description=model.description,
                parameters=model.parameters,
                region_parameters=model.region_parameters,
                artifact=model.artifact,
                skill=model.skill.model_dump(mode="json"),
                provenance=model.provenance.model_dump(mode="json"),
                created=model.created,
                approved=False,
            )
        )
        return model

    def _insert_model_info(self, conn: Connection, twin_id: str, info: ModelInfo) -> ModelVersion:
        try:
            skill, settings = skill_from_document(info.skill)
        except ValidationError as exc:
            raise InvalidParameter(
                f"twin {twin_id!r}, model {info.id!r}: skill is not valid: {_describe(exc)}"
            ) from None
        method = str(settings.pop("method", DEFAULT_METHOD))
        provenance = ModelProvenance(
            training_data=[TrainingData(dataset=d) for d in info.trained_on],
            method=method,
            method_settings={
                k: v for k, v in settings.items() if isinstance(v, int | float | str | bool)
            },
            notes=f"{info.description} Registered from the twin document (model {info.id!r}).",
        )
        return self._insert(
            conn,
            twin_id,
            kind=info.kind,
            parameters=info.parameters,
            region_parameters=info.region_parameters,
            skill=skill,
            provenance=provenance,
            description=info.description,
            artifact=None,
            created=_parse_created(info.created),
        )

    def _approve(self, conn: Connection, twin_id: str, number: int, reason: str) -> ModelVersion:
        conn.execute(
            update(models_table)
            .where(models_table.c.twin == twin_id, models_table.c.version == number)
            .values(approved=True)
        )
        if self._alias(conn, twin_id, CURRENT) != number:
            self._switch(conn, twin_id, CURRENT, number, reason or f"approved version {number}")
        return self._fetch(conn, twin_id, number)

    def _switch(self, conn: Connection, twin_id: str, alias: str, number: int, reason: str) -> None:
        now = utcnow()
        moved = conn.execute(
            update(model_aliases)
            .where(model_aliases.c.twin == twin_id, model_aliases.c.alias == alias)
            .values(version=number, updated=now)
        )
        if moved.rowcount == 0:
            conn.execute(
                insert(model_aliases).values(twin=twin_id, alias=alias, version=number, updated=now)
            )
        conn.execute(
            insert(alias_history).values(
                twin=twin_id, alias=alias, version=number, switched=now, reason=reason
            )
        )


def _version_from_row(row: Row[Any]) -> ModelVersion:
    return ModelVersion(
        twin=row.twin,
        version=row.version,
        kind=row.kind,
        description=row.description,
        parameters=row.parameters,
        region_parameters=row.region_parameters,
        artifact=row.artifact,
        skill=ModelSkill.model_validate(row.skill),
        provenance=ModelProvenance.model_validate(row.provenance),
        created=row.created,
        approved=bool(row.approved),
    )
