"""One typed settings object, read once at start-up and passed down.

Sources, highest priority first: keyword arguments, environment variables
(``TWINMESH_*``, nested with ``__``), a YAML file (``TWINMESH_CONFIG`` or
``twinmesh.yaml`` in the working directory), defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

__all__ = [
    "Settings",
    "StacSettings",
    "OgcSettings",
    "GrpcSettings",
    "JobSettings",
    "OpenEOSettings",
    "load_settings",
]


def _default_data_dir() -> Path:
    return Path.cwd() / ".twinmesh"


class StacSettings(BaseModel):
    """The catalogue API: embedded (no server) by default, pgstac at scale."""

    backend: Literal["embedded", "pgstac"] = "embedded"
    host: str = "127.0.0.1"
    port: int = 8081
    #: libpq connection string for the pgstac backend, e.g.
    #: ``postgresql://user:pass@127.0.0.1:5432/twinmesh``.
    pgstac_dsn: str | None = None
    #: Public URL the API is reached at (links); defaults to http://host:port.
    public_url: str | None = None
    #: Largest request body accepted (bytes; a search with a detailed ``intersects``
    #: polygon is the big one); a bigger one is a 413 naming the limit.
    max_body_bytes: int = Field(default=4_000_000, ge=1024)
    #: Server processes answering on the port (uvicorn workers): more cores, more
    #: searches at once.
    workers: int = Field(default=1, ge=1, le=64)

    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


class OgcSettings(BaseModel):
    """Where the OGC API service (pygeoapi with twinmesh's plugins) listens."""

    host: str = "127.0.0.1"
    port: int = 8082
    #: Public URL the API is reached at (links); defaults to http://host:port.
    public_url: str | None = None
    #: Largest request body accepted (bytes); a bigger one is a 413.
    max_body_bytes: int = 2_000_000

    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


class GrpcSettings(BaseModel):
    """Where the gRPC twin API (``protos/twinmesh/v1``) listens, and its limits."""

    host: str = "127.0.0.1"
    port: int = 8083
    #: Largest message sent or received (bytes): a bigger request is refused by gRPC, a
    #: bigger result is RESOURCE_EXHAUSTED naming this setting (ask for less, or submit a
    #: job and read the stored result).
    max_message_bytes: int = Field(default=16 * 1024**2, ge=64 * 1024, le=2**31 - 1)
    #: Threads computing capability calls at once (model runs); more calls wait their
    #: turn, and a call whose deadline passes while it waits is never computed.
    compute_threads: int = Field(default=4, ge=1, le=256)
    #: Seconds the calls in flight get to finish when the server is stopped.
    shutdown_grace_seconds: float = Field(default=5.0, ge=0)
    #: How old a ``GetTwin``/``GetJob``/``ListTwins`` answer may be (seconds): answers are
    #: kept in memory this long, so hard-polling clients do not each cost a read (0: off).
    #: Changes made through this server show at once; others within this age.
    read_cache_seconds: float = Field(default=0.5, ge=0, le=60)
    #: Address clients reach the API at (``host:port``, shown by ``twinmesh up``);
    #: defaults to host:port.
    public_address: str | None = None

    def address(self) -> str:
        return self.public_address or f"{self.host}:{self.port}"


class OpenEOSettings(BaseModel):
    """Where the openEO API 1.2 service listens, how it computes, and its limits."""

    host: str = "127.0.0.1"
    port: int = 8084
    #: Public URL the API is reached at (links, asset hrefs); defaults to http://host:port.
    public_url: str | None = None
    #: Largest request body accepted (bytes); a bigger one is a 413.
    max_body_bytes: int = 2_000_000
    #: A process graph whose load_collection / load_stac would read more than this
    #: (bytes, from metadata) is refused before any data is read.
    max_load_bytes: int = Field(default=4 * 1024**3, gt=0)
    #: A ``/result`` of at most this many bytes (in memory, before encoding) is computed
    #: and encoded in memory and sent in one piece; a larger netCDF or Zarr result is
    #: written chunk by chunk to a temporary file and streamed (bounded memory).
    result_in_memory_bytes: int = Field(default=64 * 1024**2, ge=0)
    #: ``tcp://host:port`` of a dask.distributed scheduler to compute on (the scale
    #: path); dask threads in the service process when unset.
    dask_scheduler: str | None = None
    #: A development user for ``/credentials/basic`` until the identity gateway exists
    #: (no user: basic authentication is off).
    dev_user: str | None = None
    dev_password: str | None = None
    #: OpenID Connect providers listed at ``/credentials/oidc`` (openEO's provider
    #: objects: id, issuer, title, scopes); empty until the identity gateway exists.
    oidc_providers: list[dict[str, object]] = Field(default_factory=list)

    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


class JobSettings(BaseModel):
    """How ``twinmesh worker`` processes claim and hold jobs."""

    #: Seconds a worker holds a job without renewing; a job whose worker died is
    #: taken over by another worker this long after the last renewal.
    lease_seconds: float = Field(default=30.0, gt=0)
    #: Seconds an idle worker waits between looks for new jobs.
    poll_seconds: float = Field(default=0.5, gt=0)
    #: A job whose worker died this many times (lease expired each time) is failed
    #: instead of being handed to yet another worker (a job that kills its worker).
    max_attempts: int = Field(default=3, ge=1, le=100)
    #: Worker processes `twinmesh up` starts.
    workers: int = Field(default=1, ge=0, le=64)


def _default_flower_env() -> Path:
    return Path(__file__).resolve().parents[2] / ".venv" / "flower"


class FederationSettings(BaseModel):
    """Federated training with Flower (``twinmesh federation ...``)."""

    #: Flower's own virtual environment (made by scripts/bootstrap): its pins conflict
    #: with the project's, so twinmesh starts flower-superlink/-supernode/flwr from it.
    flower_env: Path = Field(default_factory=_default_flower_env)
    #: A run still unfinished after this many seconds is stopped by the watchdog.
    deadline_seconds: float = Field(default=900.0, gt=0)
    #: Seconds the ServerApp waits for a node's reply in a round.
    round_timeout_seconds: float = Field(default=120.0, gt=0)
    #: Retraining trigger: a federated model whose validation NSE on recent
    #: observations falls below this starts a new run.
    retrain_below_nse: float = 0.5
    #: Recent = the discharge observations of the last this many days before the
    #: twin's newest one.
    retrain_window_days: int = Field(default=60, ge=1, le=3650)
    #: Fewer observations in the window (on days the model can simulate) decide nothing.
    retrain_min_observations: int = Field(default=20, ge=2)
    #: Twins whose current model is of one of these kinds are retrained by federation.
    retrain_model_kinds: list[str] = Field(default_factory=lambda: ["federated-mlp"])
    #: Twins retrained by federation whatever their current model's kind (opt-in).
    retrain_twins: list[str] = Field(default_factory=list)
    #: After a triggered retraining, the twin's next one waits at least this long.
    retrain_debounce_seconds: float = Field(default=3600.0, ge=0)
    #: Rounds and minimum nodes of a triggered retraining run.
    retrain_rounds: int = Field(default=3, ge=1)
    retrain_min_nodes: int = Field(default=2, ge=1)
    #: The SuperLink (HOST:PORT) a triggered retraining runs against; unset: no
    #: retraining is triggered (the check still reports the skill).
    superlink: str | None = None
    #: Directory of `twinmesh federation certs` (TLS); unset with ``insecure`` false:
    #: a retraining job fails and says so.
    certs: Path | None = None
    #: Development only: retraining runs without TLS.
    insecure: bool = False


class Settings(BaseSettings):
    """Everything a twinmesh process needs to know about where it runs."""

    model_config = SettingsConfigDict(
        env_prefix="TWINMESH_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    #: Local working directory: catalogue, embedded indexes, job store.
    data_dir: Path = Field(default_factory=_default_data_dir)
    #: Where datacubes live: a local path or any fsspec URL (``s3://bucket/prefix``).
    #: Defaults to ``<data_dir>/store``.
    store_url: str | None = None
    #: fsspec storage options for ``store_url`` (credentials, endpoint_url, ...).
    storage_options: dict[str, object] = Field(default_factory=dict)
    stac: StacSettings = Field(default_factory=StacSettings)
    ogc: OgcSettings = Field(default_factory=OgcSettings)
    grpc: GrpcSettings = Field(default_factory=GrpcSettings)
    openeo: OpenEOSettings = Field(default_factory=OpenEOSettings)
    #: The jobs / models / event log database: SQLite in the data dir by default,
    #: ``postgresql://user:pass@host:5432/db`` at scale.
    database_url: str | None = None
    jobs: JobSettings = Field(default_factory=JobSettings)
    federation: FederationSettings = Field(default_factory=FederationSettings)
    #: A request whose result would be larger than this is refused before any data is
    #: read (TooLarge); run it as smaller pieces.
    max_result_bytes: int = Field(default=512 * 1024**2, gt=0)
    #: Seed of every stochastic step of the demo build (documented in the data).
    demo_seed: int = 20260101
    #: Number of SCE-UA model runs used to calibrate the demo model.
    calibration_repetitions: int = 3000

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = os.environ.get("TWINMESH_CONFIG", "twinmesh.yaml")
        return (
            init_settings,
            env_settings,
            YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file),
            file_secret_settings,
        )

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or str((self.data_dir / "store").resolve())

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'twinmesh.sqlite').resolve()}"

    @property
    def catalog_dir(self) -> Path:
        return self.data_dir / "catalog"


def load_settings(**overrides: object) -> Settings:
    """Read the settings once (env, YAML file, defaults); overrides win."""
    return Settings(**overrides)  # type: ignore[arg-type]
