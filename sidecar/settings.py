"""The one settings object of every sidecar process: web app, worker, CLI, registration, queue.

Built once, by the composition root (:mod:`sidecar.wiring`), with :func:`load_settings`;
everything else receives it (or the part it needs) as an argument. pydantic does the typing
and validation; pydantic-settings merges the sources, highest priority first:

1. values passed to ``Settings(...)`` (tests);
2. environment variables ``SIDECAR_<NAME>`` (the names in docs/configuration.md);
3. the optional TOML file named by ``SIDECAR_CONFIG``: the same names without the prefix,
   lower-cased (``fhir_base_url = "..."``), PACS as tables (``[pacs.main] url = "..."``).
   Secrets are refused there: they come from the environment only.

The names are flat (``SIDECAR_FHIR_TIMEOUT_SECONDS``, ``SIDECAR_PACS_MAIN_URL``) because users
already set them; :mod:`sidecar.settings_names` maps them onto the nested models below (the
library's own ``__`` delimiter would rename every variable). A bad value stops the start with
:class:`SettingsError` naming the variable.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sidecar import settings_names as names
from sidecar.core.fhir_values import is_fhir_id
from sidecar.core.qido import RefusedValue, check_match_value

AuthMode = Literal["none", "basic", "bearer", "oauth2"]
PACS_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _comma_list(value: Any) -> Any:
    """``"a, b"`` -> ``("a", "b")``; TOML arrays and tuples pass through."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _url(value: Any) -> Any:
    """An http(s) URL without credentials, query or fragment; trailing slashes dropped."""
    if not isinstance(value, str):
        return value
    text = value.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in text):
        raise ValueError("must be an http(s) URL without spaces")
    if "@" in parts.netloc:
        raise ValueError(
            "credentials do not belong in a URL (it is logged and published): use the "
            "_USERNAME/_PASSWORD (or _TOKEN) variables"
        )
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or a fragment")
    return text


def _count(value: Any) -> Any:
    """Whole numbers only: a TOML ``true`` is not 1."""
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not a boolean")
    return value


def _fhir_id(value: Any) -> Any:
    if value is not None and not is_fhir_id(value):
        raise ValueError("must be a FHIR id (1-64 of A-Z a-z 0-9 - .)")
    return value


Url = Annotated[str, BeforeValidator(_url)]
Count = Annotated[int, BeforeValidator(_count)]
FhirId = Annotated[str, AfterValidator(_fhir_id)]
Secrets = Annotated[tuple[SecretStr, ...], BeforeValidator(_comma_list)]


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HttpAuth(_Group):
    """Credentials for an outgoing HTTP connection (the FHIR server or a PACS).

    ``mode`` defaults to ``basic`` when a username is set, else ``none``.
    """

    mode: AuthMode = "none"
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    token_url: Url | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    scope: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_mode(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("mode"):
            data = {**data, "mode": "basic" if data.get("username") else "none"}
        if isinstance(data, dict) and isinstance(data.get("mode"), str):
            data = {**data, "mode": data["mode"].lower()}
        return data

    @model_validator(mode="after")
    def _complete(self) -> HttpAuth:
        required = {
            "basic": ("username", "password"),
            "bearer": ("token",),
            "oauth2": ("token_url", "client_id", "client_secret"),
        }.get(self.mode, ())
        missing = [name for name in required if not getattr(self, name)]
        if missing:
            raise ValueError(f"auth {self.mode} needs {', '.join(missing)}")
        return self


@dataclass(frozen=True)
class IdentifierMapping:
    """A Patient.identifier system whose value is the PACS's PatientID (0010,0020).

    ``issuer`` is the IssuerOfPatientID (0010,0021) that identifiers of this system imply;
    None means the PACS is queried and checked on PatientID alone.
    """

    system: str
    issuer: str | None = None


def parse_identifier_mappings(value: Any) -> Any:
    """``system|issuer,system2|issuer2,system3`` (no ``|issuer``: PatientID only)."""
    if not isinstance(value, str):
        return value
    mappings = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        system, _, issuer = item.partition("|")
        if not system.strip():
            raise ValueError(f"identifier mapping {item!r}: the system is empty")
        if issuer.strip():
            try:
                check_match_value(issuer, what=f"the issuer of {system.strip()!r}")
            except RefusedValue as exc:
                raise ValueError(str(exc)) from None
        mappings.append({"system": system.strip(), "issuer": issuer.strip() or None})
    return tuple(mappings)


IdentifierMappings = Annotated[
    tuple[IdentifierMapping, ...], BeforeValidator(parse_identifier_mappings)
]


class FhirSettings(_Group):
    """The FHIR R4 server (``SIDECAR_FHIR_*``): one client for the use case and registration."""

    base_url: Url = "http://127.0.0.1:8080/fhir"
    auth: HttpAuth = HttpAuth()
    timeout_seconds: Positive = 30.0
    retries: Count = Field(1, ge=0)  # idempotent requests, after connect errors / 502-504


class PacsSettings(_Group):
    """One DICOMweb PACS (``SIDECAR_PACS_<NAME>_*``)."""

    name: str
    url: Url  # the DICOMweb root the sidecar queries
    wado_root: Url | None = None  # public root written into Endpoint.address (default: url)
    auth: HttpAuth = HttpAuth()
    timezone: str | None = None  # IANA zone for DICOM times without an offset
    patient_identifiers: IdentifierMappings = ()
    accession_system: str | None = None
    endpoint_id: FhirId | None = None  # this PACS's Endpoint id (default dicomweb-<name>)
    # imaging-side change detection (docs/sync.md "FHIR follows the PACS")
    changes: Literal["orthanc", "qido", "none"] = "qido"
    orthanc_url: Url | None = None  # Orthanc's REST root (default: url without /dicom-web)
    poll_seconds: Positive = 10.0  # how often the change feed / recent studies are read
    recent_days: Count = Field(2, ge=1)  # qido: the StudyDate window polled for new studies
    create_patients: bool = False  # a study of an unknown patient creates its Patient

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown IANA zone {value!r}") from None
        return value or None

    @model_validator(mode="after")
    def _defaults(self) -> PacsSettings:
        if self.wado_root is None:
            object.__setattr__(self, "wado_root", self.url)
        if not self.endpoint_id:
            object.__setattr__(self, "endpoint_id", f"dicomweb-{self.name.replace('_', '-')}")
        if self.orthanc_url is None:
            object.__setattr__(self, "orthanc_url", self.url.removesuffix("/dicom-web"))
        return self

    def mapping_for(self, system: str | None) -> IdentifierMapping | None:
        """The identifier mapping for a Patient.identifier system, if this PACS has one."""
        return next((m for m in self.patient_identifiers if m.system == system), None)


class QidoSettings(_Group):
    """How every PACS is queried (``SIDECAR_PACS_TIMEOUT_SECONDS``, ``SIDECAR_PAGE_SIZE``...)."""

    timeout_seconds: Positive = 20.0
    connect_timeout_seconds: Positive = 3.0
    retries: Count = Field(1, ge=0)
    concurrency: Count = Field(4, ge=1)
    page_size: Count = Field(500, ge=1)
    max_pages: Count = Field(2000, ge=1)  # a PACS that ignores offset must not loop forever


class SyncSettings(_Group):
    """The automatic sync: notification endpoint, queue, workers, Subscription."""

    notify_url: Url = "http://127.0.0.1:8090/notify"
    # queue backend: Redis when a URL is set, else a SQLite file (no extra server)
    redis_url: SecretStr | None = None  # may carry a password
    queue_path: Path | None = None  # default: <data_dir>/queue.sqlite3
    queue_name: str = "dicom-fhir-sync"
    # retries of a sync through PACS/FHIR outages: delay * backoff**n, capped
    max_attempts: Count = Field(10, ge=1)
    retry_delay_seconds: Positive = 5.0
    retry_backoff: float = Field(2.0, ge=1.0)
    retry_max_delay_seconds: Positive = 300.0
    # workers
    worker_threads: Count = Field(2, ge=1)
    lease_seconds: float = Field(60.0, ge=3.0)  # renewed every lease/3 while a sync runs
    reconcile_seconds: Positive = 15.0  # how often a worker re-queues lost or stale work
    stale_queued_seconds: Positive = 120.0  # a queued job not started by then is re-queued
    poll_max_seconds: Positive = 0.5  # SQLite backend: longest wait between queue polls
    # registration of the Subscription and the OperationDefinition
    subscription_id: FhirId = "dicom-fhir-sidecar-patient"
    register_on_start: bool = True
    registration_check_seconds: Positive = 60.0
    activation_timeout_seconds: Positive = 30.0
    # triggers beside the Subscription (docs/sync.md): one runner of each at a time
    triggers: bool = True  # the worker runs the change feeds, sweep, catch-up and resync
    trigger_lease_seconds: float = Field(30.0, ge=3.0)
    sweep_seconds: Positive = 60.0  # stored studies checked against the PACS
    catch_up_seconds: Positive = 60.0  # Patient?_lastUpdated=gt... for missed deliveries
    catch_up_lookback_seconds: Positive = 86400.0  # the first catch-up looks this far back
    # each catch-up searches from this long before its cursor: a Patient written in a
    # transaction that committed after a newer one (meta.lastUpdated is set at its start)
    catch_up_overlap_seconds: NonNegative = 300.0
    resync_seconds: Positive = 86400.0  # every Patient re-read in full (steady-state gaps)

    @property
    def backend(self) -> str:
        return "redis" if self.redis_url else "sqlite"

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        delay = self.retry_delay_seconds * self.retry_backoff ** max(attempt - 1, 0)
        return min(delay, self.retry_max_delay_seconds)


def _default_pacs() -> dict[str, PacsSettings]:
    return {"main": PacsSettings(name="main", url="http://127.0.0.1:8042/dicom-web")}


class Settings(BaseSettings):
    """Everything the sidecar needs; see docs/configuration.md for every variable."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    fhir: FhirSettings = FhirSettings()
    pacs: dict[str, PacsSettings] = Field(default_factory=_default_pacs)
    qido: QidoSettings = QidoSettings()
    sync: SyncSettings = SyncSettings()
    #: ``X-Sidecar-Secret`` values HAPI's relay may send (the first is current; more: rotation)
    relay_secret: Secrets = ()
    #: the Subscription header's secret; authorizes /notify only (first current, more: rotation)
    notify_secret: Secrets = ()
    #: tokens accepted as ``Authorization: Bearer`` on $fetch-imaging
    bearer_tokens: Secrets = ()
    allow_anonymous: bool = False
    data_dir: Path = Path("var/sidecar")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("pacs", mode="before")
    @classmethod
    def _named(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out = {}
        for name, pacs in value.items():
            if not PACS_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid PACS name ([a-z][a-z0-9_]*)")
            out[name] = {**pacs, "name": name} if isinstance(pacs, dict) else pacs
        return out

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if not self.pacs:
            raise ValueError("SIDECAR_PACS: at least one PACS is required")
        endpoint_ids = [p.endpoint_id for p in self.pacs.values()]
        if len(set(endpoint_ids)) != len(endpoint_ids):
            raise ValueError("SIDECAR_PACS_<NAME>_ENDPOINT_ID: each PACS needs its own Endpoint id")
        overlap = {s.get_secret_value() for s in self.relay_secret} & {
            s.get_secret_value() for s in self.notify_secret
        }
        if overlap:
            raise ValueError(
                "SIDECAR_NOTIFY_SECRET and SIDECAR_RELAY_SECRET (or SIDECAR_SHARED_SECRET) "
                "must differ: the notify secret is stored in the Subscription"
            )
        if self.sync.queue_path is None:
            sync = self.sync.model_copy(update={"queue_path": self.data_dir / "queue.sqlite3"})
            object.__setattr__(self, "sync", sync)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = _ENVIRON.get() or {}  # Settings(...) alone reads no environment
        return init_settings, names.NamedSource(settings_cls, environ)

    # -- conveniences ------------------------------------------------------------------------

    def pacs_by_name(self, name: str) -> PacsSettings:
        return self.pacs[name]

    @property
    def pacs_list(self) -> list[PacsSettings]:
        return list(self.pacs.values())


_ENVIRON: ContextVar[dict[str, str] | None] = ContextVar("sidecar_environ", default=None)


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Read and validate the settings once (the composition root calls this).

    ``environ`` defaults to ``os.environ``; ``overrides`` win over every source.
    Raises SettingsError naming the variable of the first bad value.
    """
    import os

    token = _ENVIRON.set(dict(os.environ if environ is None else environ))
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(names.describe(exc)) from None
    except names.SourceError as exc:
        raise SettingsError(str(exc)) from None
    finally:
        _ENVIRON.reset(token)
