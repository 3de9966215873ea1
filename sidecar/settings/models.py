"""The settings models: every value the sidecar reads, typed and validated (pydantic).

The documented variable name of each field is derived from these models by
:mod:`sidecar.settings.sources` (``SIDECAR_`` + the group's ``env_prefix`` + the field name
upper-cased, or the ``env`` name a field declares); docs/configuration.md lists them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from sidecar.core.fhir_values import is_fhir_id
from sidecar.core.identity import IdentifierMapping
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
    #: the same server as browsers reach it (the viewer, SMART discovery; default: base_url)
    public_url: Url | None = None
    auth: HttpAuth = HttpAuth()
    timeout_seconds: Positive = 30.0  # each request, its whole answer included
    retries: Count = Field(1, ge=0)  # idempotent requests, after connect errors / 502-504
    max_response_bytes: Count = Field(64 * 1024 * 1024, ge=1024)  # decoded, per answer
    max_pages: Count = Field(1000, ge=1)  # of one search (a `next` chain must end)


# -- the PACS -------------------------------------------------------------------------------


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
    #: PACS (default ``SIDECAR_PUBLIC_URL``/dicomweb/<name>); clients retrieve through it with
    #: their SMART token. Set it to the PACS's own public root to bypass the gateway.
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

    @property
    def through_gateway(self) -> bool:
        """Whether ``Endpoint.address`` is the sidecar's imaging gateway for this PACS (a
        client then sends its SMART token there: ``requires-access-token``)."""
        return str(self.wado_root).endswith(f"/dicomweb/{self.name}")

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
    leeway_seconds: NonNegative = 5.0  # clock skew accepted on exp/nbf (HAPI's smart-auth: 5)
    viewer_client_id: str = "dicom-fhir-viewer"  # the viewer's public client (PKCE)


class GatewaySettings(_Group):
    """The imaging gateway (``/dicomweb/<pacs>``, ``SIDECAR_GATEWAY_*``)."""

    env_prefix = "GATEWAY_"

    # how long a caller's access to a study is remembered (never past its token's expiry)
    decision_seconds: NonNegative = 60.0
    cache_entries: Count = Field(10_000, ge=100)


# -- the audit trail ----------------------------------------------------------------------------


class AuditSettings(_Group):
    """AuditEvents for every access to a patient's imaging (``SIDECAR_AUDIT_*``,
    docs/audit.md): recorded in the queue's storage, drained to FHIR by the worker."""

    env_prefix = "AUDIT_"

    enabled: bool = True
    drain_seconds: Positive = 2.0  # how often the worker sends what waits
    batch_size: Count = Field(100, ge=1, le=1000)  # events per batch Bundle
    # the gateway's repeated reads of one study by one token: one event per window,
    # recorded again with its count at most every flush_seconds
    window_seconds: Positive = 60.0
    flush_seconds: Positive = 10.0


# -- everything ---------------------------------------------------------------------------------


class Settings(BaseSettings):
    """Everything the sidecar needs; see docs/configuration.md for every variable."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    fhir: FhirSettings = FhirSettings()
    pacs: dict[str, PacsSettings] = Field(default_factory=dict, json_schema_extra={"env": None})
    qido: QidoSettings = QidoSettings()
    sync: SyncSettings = SyncSettings()
    auth: AuthSettings = AuthSettings()
    audit: AuditSettings = AuditSettings()
    gateway: GatewaySettings = GatewaySettings()
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
                    public = str(data.get("public_url") or cls.model_fields["public_url"].default)
                    entry.setdefault("wado_root", f"{public.rstrip('/')}/dicomweb/{name}")
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
        # sources.load_settings reads the environment and the file with its own sources and
        # passes the merged values in; Settings(...) alone reads nothing
        return (init_settings,)
