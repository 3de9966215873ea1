"""One settings object for the sidecar, read from the environment (and an optional TOML file).

Secrets (passwords, tokens, client secrets) are read from environment variables only; the
TOML file named by ``SIDECAR_CONFIG`` may hold every other setting under the same names
without the ``SIDECAR_`` prefix, lower-cased (``fhir_base_url``, ``[pacs.main] url = ...``).
Environment variables win over the file. See docs/configuration.md for the table.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

FHIR_AUTH_MODES = ("none", "basic", "bearer", "oauth2")
_PACS_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_SECRET_KEYS = {"password", "token", "client_secret", "shared_secret", "bearer_tokens"}


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class IdentifierMapping:
    """A Patient.identifier system whose value is the PACS's PatientID (0010,0020).

    ``issuer`` is the IssuerOfPatientID (0010,0021) that identifiers of this system imply;
    None means the PACS is queried and checked on PatientID alone.
    """

    system: str
    issuer: str | None = None


@dataclass(frozen=True)
class HttpAuth:
    """Credentials for an outgoing HTTP connection (FHIR server or PACS)."""

    mode: str = "none"  # none | basic | bearer | oauth2
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    scope: str | None = None


@dataclass(frozen=True)
class PacsSettings:
    """One DICOMweb PACS."""

    name: str
    url: str  # the DICOMweb root the sidecar queries
    wado_root: str  # the public DICOMweb root written into Endpoint.address
    auth: HttpAuth
    timezone: str | None = None  # IANA zone for DICOM dates/times without an offset
    patient_identifiers: tuple[IdentifierMapping, ...] = ()
    accession_system: str | None = None
    endpoint_id: str = ""  # FHIR id of this PACS's Endpoint

    def mapping_for(self, system: str | None) -> IdentifierMapping | None:
        """The identifier mapping for a Patient.identifier system, if this PACS has one."""
        return next((m for m in self.patient_identifiers if m.system == system), None)


@dataclass(frozen=True)
class Settings:
    """Everything the sidecar needs; built once by ``from_env`` and injected."""

    fhir_base_url: str = "http://127.0.0.1:8080/fhir"
    fhir_auth: HttpAuth = field(default_factory=HttpAuth)
    fhir_timeout_seconds: float = 30.0
    pacs: tuple[PacsSettings, ...] = ()
    pacs_timeout_seconds: float = 20.0
    pacs_connect_timeout_seconds: float = 3.0
    pacs_retries: int = 1
    qido_concurrency: int = 4
    page_size: int = 500
    shared_secret: str | None = field(default=None, repr=False)
    bearer_tokens: tuple[str, ...] = field(default=(), repr=False)
    allow_anonymous: bool = False
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``SIDECAR_*`` variables (and the TOML file named by ``SIDECAR_CONFIG``)."""
        env = os.environ if environ is None else environ
        file_values = _read_toml(env.get("SIDECAR_CONFIG"))
        get = SettingsReader(env, file_values)
        names = [n.strip().lower() for n in get.str("PACS", "main").split(",") if n.strip()]
        if not names:
            raise SettingsError("SIDECAR_PACS: at least one PACS name is required")
        default_ids = get.str("PATIENT_IDENTIFIERS", "")
        pacs = tuple(_pacs_settings(get, name, default_ids) for name in names)
        if len({p.endpoint_id for p in pacs}) != len(pacs):
            raise SettingsError("SIDECAR_PACS_<NAME>_ENDPOINT_ID: each PACS needs its own id")
        settings = cls(
            fhir_base_url=get.str("FHIR_BASE_URL", cls.fhir_base_url).rstrip("/"),
            fhir_auth=_auth(get, "FHIR_"),
            fhir_timeout_seconds=get.float("FHIR_TIMEOUT_SECONDS", cls.fhir_timeout_seconds),
            pacs=pacs,
            pacs_timeout_seconds=get.float("PACS_TIMEOUT_SECONDS", cls.pacs_timeout_seconds),
            pacs_connect_timeout_seconds=get.float(
                "PACS_CONNECT_TIMEOUT_SECONDS", cls.pacs_connect_timeout_seconds
            ),
            pacs_retries=get.int("PACS_RETRIES", cls.pacs_retries, minimum=0),
            qido_concurrency=get.int("QIDO_CONCURRENCY", cls.qido_concurrency, minimum=1),
            page_size=get.int("PAGE_SIZE", cls.page_size, minimum=1),
            shared_secret=get.secret("SHARED_SECRET"),
            bearer_tokens=tuple(
                t.strip() for t in (get.secret("BEARER_TOKENS") or "").split(",") if t.strip()
            ),
            allow_anonymous=get.bool("ALLOW_ANONYMOUS", False),
            log_level=get.str("LOG_LEVEL", "INFO").upper(),
        )
        return settings

    def pacs_by_name(self, name: str) -> PacsSettings:
        return next(p for p in self.pacs if p.name == name)


def parse_identifier_mappings(text: str) -> tuple[IdentifierMapping, ...]:
    """Parse ``system|issuer,system2|issuer2,system3`` (no ``|issuer``: PatientID only)."""
    mappings = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        system, _, issuer = item.partition("|")
        if not system.strip():
            raise SettingsError(f"identifier mapping {item!r}: the system is empty")
        mappings.append(IdentifierMapping(system.strip(), issuer.strip() or None))
    return tuple(mappings)


def _pacs_settings(get: SettingsReader, name: str, default_ids: str) -> PacsSettings:
    if not _PACS_NAME.match(name):
        raise SettingsError(f"SIDECAR_PACS: {name!r} is not a valid PACS name ([a-z][a-z0-9_]*)")
    prefix = f"PACS_{name.upper()}_"
    url = get.str(prefix + "URL", "http://127.0.0.1:8042/dicom-web" if name == "main" else "")
    if not url:
        raise SettingsError(f"SIDECAR_{prefix}URL is required")
    timezone = get.str(prefix + "TIMEZONE", "") or None
    if timezone:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise SettingsError(
                f"SIDECAR_{prefix}TIMEZONE: unknown IANA zone {timezone!r}"
            ) from exc
    return PacsSettings(
        name=name,
        url=url.rstrip("/"),
        wado_root=(get.str(prefix + "WADO_ROOT", "") or url).rstrip("/"),
        auth=_auth(get, prefix),
        timezone=timezone,
        patient_identifiers=parse_identifier_mappings(
            get.str(prefix + "PATIENT_IDENTIFIERS", default_ids)
        ),
        accession_system=get.str(prefix + "ACCESSION_SYSTEM", "") or None,
        endpoint_id=get.str(prefix + "ENDPOINT_ID", f"dicomweb-{name.replace('_', '-')}"),
    )


def _auth(get: SettingsReader, prefix: str) -> HttpAuth:
    username = get.str(prefix + "USERNAME", "") or None
    default_mode = "basic" if username else "none"
    mode = get.str(prefix + "AUTH", default_mode).lower()
    if mode not in FHIR_AUTH_MODES:
        raise SettingsError(f"SIDECAR_{prefix}AUTH must be one of {', '.join(FHIR_AUTH_MODES)}")
    auth = HttpAuth(
        mode=mode,
        username=username,
        password=get.secret(prefix + "PASSWORD"),
        token=get.secret(prefix + "TOKEN"),
        token_url=get.str(prefix + "TOKEN_URL", "") or None,
        client_id=get.str(prefix + "CLIENT_ID", "") or None,
        client_secret=get.secret(prefix + "CLIENT_SECRET"),
        scope=get.str(prefix + "SCOPE", "") or None,
    )
    required = {
        "basic": ("username", "password"),
        "bearer": ("token",),
        "oauth2": ("token_url", "client_id", "client_secret"),
    }.get(mode, ())
    for attr in required:
        if not getattr(auth, attr):
            raise SettingsError(f"SIDECAR_{prefix}{attr.upper()} is required with AUTH={mode}")
    return auth


def _read_toml(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"SIDECAR_CONFIG={path}: {exc}") from exc
    flat: dict[str, Any] = {}
    _flatten(data, "", flat)
    leaked = [k for k in flat if any(k.endswith(s.upper()) for s in _SECRET_KEYS)]
    if leaked:
        raise SettingsError(f"SIDECAR_CONFIG: secrets belong in the environment, not {leaked}")
    return flat


def _flatten(data: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in data.items():
        name = f"{prefix}{key}".upper()
        if isinstance(value, Mapping):
            _flatten(value, name + "_", out)
        else:
            out[name] = value


class SettingsReader:
    """Looks a name up in the environment (``SIDECAR_`` + name), then in the TOML file, and
    parses it; every settings object of ours reads through it."""

    def __init__(
        self, env: Mapping[str, str], file_values: Mapping[str, Any] | None = None
    ) -> None:
        self._env = env
        self._file = file_values or {}

    def str(self, name: str, default: str) -> str:
        value = self._env.get("SIDECAR_" + name)
        if value is None:
            value = self._file.get(name, default)
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        return str(value).strip()

    def secret(self, name: str) -> str | None:
        return self._env.get("SIDECAR_" + name) or None

    def float(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        text = self.str(name, repr(default))
        try:
            value = float(text)
        except ValueError:
            raise SettingsError(f"SIDECAR_{name}: {text!r} is not a number") from None
        if value <= 0 or value < minimum:
            raise SettingsError(f"SIDECAR_{name} must be positive and at least {minimum}")
        return value

    def int(self, name: str, default: int, *, minimum: int) -> int:
        text = self.str(name, str(default))
        try:
            value = int(text)
        except ValueError:
            raise SettingsError(f"SIDECAR_{name}: {text!r} is not an integer") from None
        if value < minimum:
            raise SettingsError(f"SIDECAR_{name} must be at least {minimum}")
        return value

    def bool(self, name: str, default: bool) -> bool:
        text = self.str(name, "true" if default else "false").lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"SIDECAR_{name}: {text!r} is not a boolean")
