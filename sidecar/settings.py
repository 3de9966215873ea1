"""The one settings object of every sidecar process: web app, worker, CLI, registration, queue.

Built once, by the composition root (:mod:`sidecar.wiring`), with :func:`load_settings`;
everything else receives it (or the part it needs) as an argument. The models below are
the single source of truth: each field's documented variable name is derived from the model
(``SIDECAR_`` + the group's prefix + the field name upper-cased, or the ``env`` name a field
declares), sub-models such as the credentials are flattened into their parent's prefix, and
PACS are ``SIDECAR_PACS_<NAME>_<FIELD>`` for each name in ``SIDECAR_PACS``.

Sources, highest priority first (pydantic-settings' own source classes):

1. the environment (:class:`DocumentedEnvSource`, an ``EnvSettingsSource`` reading the
   documented names); every secret may also come from a file named by ``<NAME>_FILE``
   (Docker and Kubernetes secrets); an unknown ``SIDECAR_*`` variable stops the start;
2. the optional TOML file named by ``SIDECAR_CONFIG`` (``TomlConfigSettingsSource``), shaped
   like the models (``[fhir] base_url = "..."``, ``[pacs.main] url = "..."``); secrets are
   refused there, unknown keys too.

A bad value stops the start with :class:`SettingsError` naming the variable.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin
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
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

from sidecar.core.fhir_values import is_fhir_id
from sidecar.core.qido import RefusedValue, check_match_value

PREFIX = "SIDECAR_"
DEFAULT_PACS_URL = "http://127.0.0.1:8042/dicom-web"
AuthMode = Literal["none", "basic", "bearer", "oauth2"]
PACS_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: Shortest secret accepted: a shared secret is guessed offline if it is short.
MIN_SECRET_LENGTH = 16
#: What the examples ship with: a deployment that kept it has no secret at all.
PLACEHOLDER = re.compile(r"change[-_ ]?me|replace[-_ ]?me|<[^>]*>", re.IGNORECASE)


class SettingsError(ValueError):
    """A setting is missing, malformed or unknown; the message names the variable."""


def env(name: str) -> Any:
    """A field whose documented name is ``name`` (without ``SIDECAR_``), not the derived one."""
    return {"json_schema_extra": {"env": name}}


# -- value types ------------------------------------------------------------------------------


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


def _strong(secrets: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
    """Shared secrets a caller presents: long enough, and not an example's placeholder."""
    for secret in secrets:
        text = secret.get_secret_value()
        if len(text) < MIN_SECRET_LENGTH:
            raise ValueError(f"each value must be at least {MIN_SECRET_LENGTH} characters long")
        if PLACEHOLDER.search(text):
            raise ValueError("holds a placeholder from an example: generate a random value")
    return secrets


Url = Annotated[str, BeforeValidator(_url)]
Count = Annotated[int, BeforeValidator(_count)]
FhirId = Annotated[str, AfterValidator(_fhir_id)]
Secrets = Annotated[tuple[SecretStr, ...], BeforeValidator(_comma_list), AfterValidator(_strong)]


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    #: the documented names of this group's fields start with SIDECAR_ + this
    env_prefix: ClassVar[str] = ""


# -- credentials of an outgoing connection ----------------------------------------------------


class HttpAuth(_Group):
    """Credentials for an outgoing HTTP connection (the FHIR server or a PACS); flattened
    into the connection's names (``SIDECAR_FHIR_USERNAME``, ``SIDECAR_PACS_MAIN_TOKEN``).

    ``mode`` defaults to ``basic`` when a username is set, else ``none``. ``oauth2`` is
    client credentials (RFC 6749 4.4) with a client secret, or with ``private_key`` (a PEM
    key, from ``..._PRIVATE_KEY_FILE``): SMART Backend Services' ``private_key_jwt``
    (RFC 7523), the key's ``kid`` in ``key_id``.
    """

    mode: AuthMode = Field("none", **env("AUTH"))
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    token_url: Url | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    private_key: SecretStr | None = None
    key_id: str | None = None
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
            "oauth2": ("token_url", "client_id"),
        }.get(self.mode, ())
        missing = [name for name in required if not getattr(self, name)]
        if self.mode == "oauth2" and not (self.client_secret or self.private_key):
            missing.append("client_secret or private_key")
        if missing:
            raise ValueError(f"auth {self.mode} needs {', '.join(missing)}")
        return self


# -- the FHIR server ----------------------------------------------------------------------------


class FhirSettings(_Group):
    """The FHIR R4 server (``SIDECAR_FHIR_*``): one client for the use case and registration."""

    env_prefix = "FHIR_"

    base_url: Url = "http://127.0.0.1:8080/fhir"
    auth: HttpAuth = HttpAuth()
    timeout_seconds: Positive = 30.0  # each request, its whole answer included
    retries: Count = Field(1, ge=0)  # idempotent requests, after connect errors / 502-504
    max_response_bytes: Count = Field(64 * 1024 * 1024, ge=1024)  # decoded, per answer
    max_pages: Count = Field(1000, ge=1)  # of one search (a `next` chain must end)


# -- the PACS -------------------------------------------------------------------------------


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


class OrthancChangeLog(_Group):
    """New studies from Orthanc's own change log (``SIDECAR_PACS_<NAME>_CHANGES=orthanc``),
    read at its REST root ``SIDECAR_PACS_<NAME>_ORTHANC_URL`` (sidecar/adapters/orthanc.py)."""

    kind: Literal["orthanc"] = Field("orthanc", **env("CHANGES"))
    url: Url = Field(..., **env("ORTHANC_URL"))
    poll_seconds: Positive = 10.0


class QidoPoll(_Group):
    """New studies by polling QIDO-RS for recent StudyDates (any DICOMweb PACS)."""

    kind: Literal["qido"] = Field("qido", **env("CHANGES"))
    poll_seconds: Positive = 10.0
    recent_days: Count = Field(2, ge=1)  # the StudyDate window polled for new studies


class NoChangeFeed(_Group):
    """No new-study feed: the Subscription, the sweep and the resync only."""

    kind: Literal["none"] = Field("none", **env("CHANGES"))


ChangeFeed = Annotated[OrthancChangeLog | QidoPoll | NoChangeFeed, Field(discriminator="kind")]


class PacsSettings(_Group):
    """One DICOMweb PACS (``SIDECAR_PACS_<NAME>_*``)."""

    name: str = Field(..., json_schema_extra={"env": None})  # from SIDECAR_PACS, not a variable
    url: Url  # the DICOMweb root the sidecar queries
    #: the DICOMweb root written into Endpoint.address: the sidecar's imaging gateway for this
    #: PACS (default ``SIDECAR_PUBLIC_URL``/dicomweb/<name>); clients retrieve through it
    wado_root: Url | None = None
    auth: HttpAuth = HttpAuth()
    timezone: str | None = None  # IANA zone for DICOM times without an offset
    patient_identifiers: IdentifierMappings = ()
    accession_system: str | None = None
    endpoint_id: FhirId | None = None  # this PACS's Endpoint id (default dicomweb-<name>)
    changes: ChangeFeed = QidoPoll()
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

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name") and not data.get("endpoint_id"):
            data = {**data, "endpoint_id": f"dicomweb-{str(data['name']).replace('_', '-')}"}
        return data

    def mapping_for(self, system: str | None) -> IdentifierMapping | None:
        """The identifier mapping for a Patient.identifier system, if this PACS has one."""
        return next((m for m in self.patient_identifiers if m.system == system), None)


class QidoSettings(_Group):
    """How every PACS is queried (``SIDECAR_PACS_TIMEOUT_SECONDS``, ``SIDECAR_PAGE_SIZE``...)."""

    timeout_seconds: Positive = Field(20.0, **env("PACS_TIMEOUT_SECONDS"))
    connect_timeout_seconds: Positive = Field(3.0, **env("PACS_CONNECT_TIMEOUT_SECONDS"))
    retries: Count = Field(1, ge=0, **env("PACS_RETRIES"))
    concurrency: Count = Field(4, ge=1, **env("QIDO_CONCURRENCY"))
    page_size: Count = Field(500, ge=1, **env("PAGE_SIZE"))
    # a PACS that ignores offset must not loop forever
    max_pages: Count = Field(2000, ge=1, **env("QIDO_MAX_PAGES"))
    # one answer, decoded (a gzip bomb is cut off here, not in memory)
    max_response_bytes: Count = Field(64 * 1024 * 1024, ge=1024, **env("PACS_MAX_RESPONSE_BYTES"))


# -- the automatic sync -------------------------------------------------------------------------


class SyncSettings(_Group):
    """The automatic sync: notification endpoint, queue, workers, Subscription, triggers."""

    notify_url: Url = "http://127.0.0.1:8090/notify"
    # queue backend: Redis when a URL is set, else a SQLite file (no extra server)
    redis_url: SecretStr | None = None  # may carry a password
    queue_path: Path | None = None  # default: <data_dir>/queue.sqlite3
    queue_name: str = "dicom-fhir-sync"
    # retries of a sync through PACS/FHIR outages: delay * backoff**n, capped
    max_attempts: Count = Field(10, ge=1, **env("SYNC_MAX_ATTEMPTS"))
    retry_delay_seconds: Positive = Field(5.0, **env("SYNC_RETRY_DELAY_SECONDS"))
    retry_backoff: float = Field(2.0, ge=1.0, **env("SYNC_RETRY_BACKOFF"))
    retry_max_delay_seconds: Positive = Field(300.0, **env("SYNC_RETRY_MAX_DELAY_SECONDS"))
    # workers
    worker_threads: Count = Field(2, ge=1)
    # renewed every lease/3 while a sync runs
    lease_seconds: float = Field(60.0, ge=3.0, **env("SYNC_LEASE_SECONDS"))
    # how often a worker re-queues lost or stale work
    reconcile_seconds: Positive = Field(15.0, **env("SYNC_RECONCILE_SECONDS"))
    # a queued job not started by then is re-queued
    stale_queued_seconds: Positive = Field(120.0, **env("SYNC_STALE_QUEUED_SECONDS"))
    # SQLite backend: longest wait between queue polls
    poll_max_seconds: Positive = Field(0.5, **env("QUEUE_POLL_MAX_SECONDS"))
    # registration of the Subscription and the OperationDefinition
    subscription_id: FhirId = "dicom-fhir-sidecar-patient"
    register_on_start: bool = True
    registration_check_seconds: Positive = 60.0
    activation_timeout_seconds: Positive = Field(
        30.0, **env("SUBSCRIPTION_ACTIVATION_TIMEOUT_SECONDS")
    )
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
    # per-patient records kept for Patients synced once and never again (random ids)
    ledger_max_patients: Count = Field(100_000, ge=100, **env("SYNC_LEDGER_MAX_PATIENTS"))

    @property
    def backend(self) -> str:
        return "redis" if self.redis_url else "sqlite"

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        delay = self.retry_delay_seconds * self.retry_backoff ** max(attempt - 1, 0)
        return min(delay, self.retry_max_delay_seconds)


# -- who may call: the authorization server ---------------------------------------------------


class AuthSettings(_Group):
    """The authorization server whose tokens the sidecar accepts (``SIDECAR_AUTH_*``): the
    FHIR server's own (SMART App Launch), so one token opens the FHIR data and the images."""

    env_prefix = "AUTH_"

    issuer: Url | None = None  # e.g. https://keycloak/realms/dicom-fhir
    audience: str | None = None  # the FHIR base URL tokens are issued for
    jwks_url: Url | None = None  # default: the issuer's OpenID discovery document says
    leeway_seconds: NonNegative = 30.0  # clock skew accepted on exp/nbf


# -- everything ---------------------------------------------------------------------------------


class Settings(BaseSettings):
    """Everything the sidecar needs; see docs/configuration.md for every variable."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    fhir: FhirSettings = FhirSettings()
    pacs: dict[str, PacsSettings] = Field(default_factory=dict, json_schema_extra={"env": None})
    qido: QidoSettings = QidoSettings()
    sync: SyncSettings = SyncSettings()
    auth: AuthSettings = AuthSettings()
    #: ``X-Sidecar-Secret`` values HAPI's relay may send (the first is current; more: rotation)
    relay_secret: Secrets = ()
    #: the Subscription header's secret; authorizes /notify only (first current, more: rotation)
    notify_secret: Secrets = ()
    #: tokens accepted as ``Authorization: Bearer`` on $fetch-imaging
    bearer_tokens: Secrets = ()
    allow_anonymous: bool = False
    #: where the sidecar is reached from outside (the imaging gateway's Endpoint.address)
    public_url: Url = "http://127.0.0.1:8090"
    data_dir: Path = Path("var/sidecar")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        """Defaults that depend on other settings, filled in before validation."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        pacs = data.get("pacs", {"main": {}})
        if isinstance(pacs, dict):
            named = {}
            for name, entry in pacs.items():
                if not PACS_NAME.match(str(name)):
                    raise ValueError(f"{name!r} is not a valid PACS name ([a-z][a-z0-9_]*)")
                entry = {**entry, "name": name} if isinstance(entry, dict) else entry
                if isinstance(entry, dict):
                    if name == "main":
                        entry.setdefault("url", DEFAULT_PACS_URL)
                    if entry.get("url"):
                        entry.setdefault("wado_root", entry["url"])
                named[name] = entry
            data["pacs"] = named
        sync = data.get("sync") or {}
        if isinstance(sync, dict) and not sync.get("queue_path"):
            data_dir = Path(str(data.get("data_dir") or cls.model_fields["data_dir"].default))
            data["sync"] = {**sync, "queue_path": data_dir / "queue.sqlite3"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        endpoint_ids = [p.endpoint_id for p in self.pacs.values()]
        if len(set(endpoint_ids)) != len(endpoint_ids):
            raise ValueError("SIDECAR_PACS_<NAME>_ENDPOINT_ID: each PACS needs its own Endpoint id")
        notify = {s.get_secret_value() for s in self.notify_secret}
        if notify & {s.get_secret_value() for s in (*self.relay_secret, *self.bearer_tokens)}:
            raise ValueError(
                "SIDECAR_NOTIFY_SECRET must differ from SIDECAR_RELAY_SECRET and from every "
                "SIDECAR_BEARER_TOKENS value: it is stored in the Subscription, readable by "
                "whoever may read Subscriptions"
            )
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
        # load_settings() reads the environment and the file with the sources below and
        # passes the merged values in; Settings(...) alone reads nothing
        return (init_settings,)


# -- the documented names, derived from the models ---------------------------------------------


def _sub_models(annotation: Any) -> list[type[BaseModel]]:
    """The models a field holds (one, or each member of a union), else []."""
    if get_origin(annotation) is Annotated:
        return _sub_models(get_args(annotation)[0])
    if get_origin(annotation) in (Union, type(int | str)):
        return [m for arg in get_args(annotation) for m in _sub_models(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _is_secret(field: FieldInfo) -> bool:
    return "SecretStr" in repr(field.annotation)


def names_of(model: type[BaseModel], prefix: str = "") -> dict[str, tuple[tuple[str, ...], bool]]:
    """Documented name (without ``SIDECAR_``) -> (path in ``model``, is a secret), with
    sub-models flattened into ``prefix`` (a union's members merged)."""
    out: dict[str, tuple[tuple[str, ...], bool]] = {}
    for field_name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if "env" in extra and extra["env"] is None:
            continue
        subs = _sub_models(field.annotation)
        if subs:
            for sub in subs:
                for name, (path, secret) in names_of(sub, prefix).items():
                    out[name] = ((field_name, *path), secret)
            continue
        name = prefix + str(extra.get("env") or field_name.upper())
        out[name] = ((field_name,), _is_secret(field))
    return out


def _fixed_names() -> dict[str, tuple[tuple[str, ...], bool]]:
    out: dict[str, tuple[tuple[str, ...], bool]] = {}
    for field_name, field in Settings.model_fields.items():
        subs = _sub_models(field.annotation)
        if field_name == "pacs":
            continue
        if subs:
            for name, (path, secret) in names_of(subs[0], subs[0].env_prefix).items():  # type: ignore[attr-defined]
                out[name] = ((field_name, *path), secret)
        else:
            out[field_name.upper()] = ((field_name,), _is_secret(field))
    return out


FIXED_NAMES = _fixed_names()
PACS_FIELD_NAMES = names_of(PacsSettings)
PACS_LIST = "PACS"  # comma-separated PACS names
DEFAULT_IDENTIFIERS = "PATIENT_IDENTIFIERS"  # default of every PACS's PATIENT_IDENTIFIERS
DEPRECATED = {"SHARED_SECRET": "RELAY_SECRET"}  # the first wave's single secret
CONFIG = "CONFIG"  # SIDECAR_CONFIG: the TOML file itself
FILE_SUFFIX = "_FILE"


def pacs_names(environ: Mapping[str, str], toml_values: Mapping[str, Any]) -> list[str]:
    """The configured PACS: ``SIDECAR_PACS``, else the file's ``[pacs.NAME]`` tables, else main."""
    listed = environ.get(PREFIX + PACS_LIST)
    if listed is not None:
        return [n.strip().lower() for n in listed.split(",") if n.strip()]
    tables = toml_values.get("pacs")
    return [str(n) for n in tables] if isinstance(tables, Mapping) and tables else ["main"]


def is_secret_name(name: str, pacs: list[str]) -> bool:
    """Whether a documented name (without ``SIDECAR_``) holds a secret."""
    if name in FIXED_NAMES:
        return FIXED_NAMES[name][1]
    if name in DEPRECATED:
        return True
    return any(
        name == f"PACS_{p.upper()}_{suffix}" and secret
        for p in pacs
        for suffix, (_, secret) in PACS_FIELD_NAMES.items()
    )


def _put(out: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        out = out.setdefault(key, {})
    out[path[-1]] = value


class DocumentedEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading the documented ``SIDECAR_*`` names
    (derived from the models) into the nested settings; ``<NAME>_FILE`` for every secret;
    an unknown ``SIDECAR_*`` name is an error, never silently ignored."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        environ: Mapping[str, str],
        pacs: list[str],
    ) -> None:
        self._environ = environ
        self.pacs = pacs
        super().__init__(settings_cls, case_sensitive=True, env_ignore_empty=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, True, True, None)

    def _where(self, name: str) -> tuple[tuple[str, ...], bool] | None:
        if name in FIXED_NAMES:
            return FIXED_NAMES[name]
        for pacs in self.pacs:
            suffix = name.removeprefix(f"PACS_{pacs.upper()}_")
            if suffix != name and suffix in PACS_FIELD_NAMES:
                path, secret = PACS_FIELD_NAMES[suffix]
                return ("pacs", pacs, *path), secret
        return None

    def _values(self) -> Iterator[tuple[str, Any]]:
        """(name, value) of every SIDECAR_ variable, ``_FILE`` ones read."""
        for key, value in self.env_vars.items():
            if not key.startswith(PREFIX) or value is None:
                continue
            name = key[len(PREFIX) :]
            base = name.removesuffix(FILE_SUFFIX)
            if base != name and is_secret_name(base, self.pacs):
                if PREFIX + base in self.env_vars:
                    raise SettingsError(f"{PREFIX}{base} and {key}: set one of them, not both")
                try:
                    yield base, Path(value).read_text(encoding="utf-8").rstrip("\r\n")
                except OSError as exc:
                    raise SettingsError(f"{key}: cannot read {value}: {exc.strerror}") from None
            else:
                yield name, value

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        default_identifiers = None
        for name, value in self._values():
            if name in (CONFIG, PACS_LIST):
                continue
            if name == DEFAULT_IDENTIFIERS:
                default_identifiers = value
                continue
            if name in DEPRECATED:
                if PREFIX + DEPRECATED[name] not in self.env_vars:
                    _put(out, FIXED_NAMES[DEPRECATED[name]][0], value)
                continue
            where = self._where(name)
            if where is None:
                raise SettingsError(
                    f"{PREFIX}{name}: unknown setting (a typo? the names are in "
                    "docs/configuration.md; a PACS must be listed in SIDECAR_PACS)"
                )
            _put(out, where[0], value)
        for pacs in self.pacs:
            entry = out.setdefault("pacs", {}).setdefault(pacs, {})
            if default_identifiers is not None:
                entry.setdefault("patient_identifiers", default_identifiers)
        return out


class SettingsFile(TomlConfigSettingsSource):
    """pydantic-settings' TOML source for ``SIDECAR_CONFIG``; secrets are refused in it."""

    def __init__(self, settings_cls: type[BaseSettings], path: str | None) -> None:
        if path and not Path(path).is_file():
            raise SettingsError(f"{PREFIX}{CONFIG}={path}: no such file")
        try:
            super().__init__(settings_cls, toml_file=path)
        except ValueError as exc:  # tomllib.TOMLDecodeError
            raise SettingsError(f"{PREFIX}{CONFIG}={path}: {exc}") from None
        leaked = sorted(".".join(p) for p in _secret_paths(self.toml_data))
        if leaked:
            raise SettingsError(
                f"{PREFIX}{CONFIG}: secrets belong in the environment (or <NAME>_FILE), not "
                f"in the file: {', '.join(leaked)}"
            )


def _secret_paths(values: Mapping[str, Any]) -> Iterator[tuple[str, ...]]:
    secret_paths = {path for path, secret in FIXED_NAMES.values() if secret}
    pacs_secret_paths = {path for path, secret in PACS_FIELD_NAMES.values() if secret}
    for path in _leaves(values):
        if path in secret_paths or (path[:1] == ("pacs",) and path[2:] in pacs_secret_paths):
            yield path


def _leaves(values: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in values.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, (*prefix, str(key)))
        else:
            yield (*prefix, str(key))


def _merge(low: Mapping[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(low)
    for key, value in high.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def env_name(loc: tuple[Any, ...]) -> str | None:
    """The variable behind a validation error's location, e.g. ``SIDECAR_PACS_MAIN_URL``."""
    parts = tuple(str(p) for p in loc if not isinstance(p, int))
    if parts[:1] == ("pacs",):
        if len(parts) == 1:
            return PREFIX + PACS_LIST
        inner = tuple(p for p in parts[2:] if p not in ("orthanc", "qido", "none"))
        for suffix, (path, _) in PACS_FIELD_NAMES.items():
            if inner and inner[: len(path)] == path:
                return f"{PREFIX}PACS_{parts[1].upper()}_{suffix}"
        return f"{PREFIX}PACS_{parts[1].upper()}" + ("_AUTH" if inner[:1] == ("auth",) else "")
    best = None
    for name, (path, _) in FIXED_NAMES.items():
        if parts[: len(path)] == path and (best is None or len(path) > len(FIXED_NAMES[best][0])):
            best = name
    if best is None and parts[:2] == ("fhir", "auth"):
        best = "FHIR_AUTH"
    return PREFIX + best if best else None


def describe(error: ValidationError) -> str:
    """The first error, as ``SIDECAR_NAME: what is wrong`` (secrets and URLs not echoed)."""
    first = error.errors()[0]
    if first["type"] == "extra_forbidden":  # only the file can hold a name we do not know
        where = ".".join(str(p) for p in first["loc"])
        return (
            f"{PREFIX}{CONFIG}: unknown setting {where!r} (the file mirrors docs/configuration.md)"
        )
    name = env_name(tuple(first["loc"]))
    message = str(first["msg"]).removeprefix("Value error, ")
    given = first.get("input")
    quiet = name is None or name.endswith(("_URL", "_ROOT", "SECRET", "TOKEN", "TOKENS", "KEY"))
    quiet = quiet or "PASSWORD" in (name or "")
    shown = f" (got {given!r})" if isinstance(given, str | int | float) and not quiet else ""
    return f"{name}: {message}{shown}" if name else message


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read and validate the settings once (the composition root calls this).

    ``environ`` defaults to ``os.environ``; ``overrides`` win over every source.
    Raises SettingsError naming the variable of the first bad or unknown value.
    """
    import os

    environ = dict(os.environ if environ is None else environ)
    path = environ.get(PREFIX + CONFIG) or None
    from_file = SettingsFile(Settings, path)()
    pacs = pacs_names(environ, from_file)
    from_env = DocumentedEnvSource(Settings, environ, pacs)()
    if isinstance(from_file.get("pacs"), Mapping):
        unlisted = sorted(set(from_file["pacs"]) - set(pacs))
        if unlisted:
            raise SettingsError(
                f"{PREFIX}{CONFIG}: [pacs.{unlisted[0]}] is not one of SIDECAR_PACS "
                f"({', '.join(pacs)}): a typo, or add it there"
            )
    if not pacs:
        raise SettingsError(f"{PREFIX}{PACS_LIST}: at least one PACS is required")
    values = _merge(_merge(from_file, from_env), overrides)
    values["pacs"] = {name: values.get("pacs", {}).get(name, {}) for name in pacs}
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None
