"""The documented setting names (``SIDECAR_<NAME>`` and their TOML twins) and where each lands
in :class:`sidecar.settings.Settings`.

One table, :data:`NAMES`, says it all: docs/configuration.md lists the same names (a test
checks both agree). :class:`NamedSource` is the pydantic-settings source that reads the
environment and the TOML file through it; :func:`describe` turns a validation error back
into the name a user set.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource

PREFIX = "SIDECAR_"

#: Credentials of one HTTP connection, under the FHIR_ or PACS_<NAME>_ prefix.
AUTH_NAMES = {
    "AUTH": ("auth", "mode"),
    "USERNAME": ("auth", "username"),
    "PASSWORD": ("auth", "password"),
    "TOKEN": ("auth", "token"),
    "TOKEN_URL": ("auth", "token_url"),
    "CLIENT_ID": ("auth", "client_id"),
    "CLIENT_SECRET": ("auth", "client_secret"),
    "SCOPE": ("auth", "scope"),
}

#: Name (without SIDECAR_) -> path in Settings.
NAMES: dict[str, tuple[str, ...]] = {
    "FHIR_BASE_URL": ("fhir", "base_url"),
    "FHIR_TIMEOUT_SECONDS": ("fhir", "timeout_seconds"),
    "FHIR_RETRIES": ("fhir", "retries"),
    **{f"FHIR_{k}": ("fhir", *v) for k, v in AUTH_NAMES.items()},
    "PACS_TIMEOUT_SECONDS": ("qido", "timeout_seconds"),
    "PACS_CONNECT_TIMEOUT_SECONDS": ("qido", "connect_timeout_seconds"),
    "PACS_RETRIES": ("qido", "retries"),
    "QIDO_CONCURRENCY": ("qido", "concurrency"),
    "PAGE_SIZE": ("qido", "page_size"),
    "QIDO_MAX_PAGES": ("qido", "max_pages"),
    "NOTIFY_URL": ("sync", "notify_url"),
    "REDIS_URL": ("sync", "redis_url"),
    "QUEUE_PATH": ("sync", "queue_path"),
    "QUEUE_NAME": ("sync", "queue_name"),
    "SYNC_MAX_ATTEMPTS": ("sync", "max_attempts"),
    "SYNC_RETRY_DELAY_SECONDS": ("sync", "retry_delay_seconds"),
    "SYNC_RETRY_BACKOFF": ("sync", "retry_backoff"),
    "SYNC_RETRY_MAX_DELAY_SECONDS": ("sync", "retry_max_delay_seconds"),
    "WORKER_THREADS": ("sync", "worker_threads"),
    "SYNC_LEASE_SECONDS": ("sync", "lease_seconds"),
    "SYNC_RECONCILE_SECONDS": ("sync", "reconcile_seconds"),
    "SYNC_STALE_QUEUED_SECONDS": ("sync", "stale_queued_seconds"),
    "QUEUE_POLL_MAX_SECONDS": ("sync", "poll_max_seconds"),
    "SUBSCRIPTION_ID": ("sync", "subscription_id"),
    "REGISTER_ON_START": ("sync", "register_on_start"),
    "REGISTRATION_CHECK_SECONDS": ("sync", "registration_check_seconds"),
    "SUBSCRIPTION_ACTIVATION_TIMEOUT_SECONDS": ("sync", "activation_timeout_seconds"),
    "TRIGGERS": ("sync", "triggers"),
    "TRIGGER_LEASE_SECONDS": ("sync", "trigger_lease_seconds"),
    "SWEEP_SECONDS": ("sync", "sweep_seconds"),
    "CATCH_UP_SECONDS": ("sync", "catch_up_seconds"),
    "CATCH_UP_LOOKBACK_SECONDS": ("sync", "catch_up_lookback_seconds"),
    "CATCH_UP_OVERLAP_SECONDS": ("sync", "catch_up_overlap_seconds"),
    "RESYNC_SECONDS": ("sync", "resync_seconds"),
    "RELAY_SECRET": ("relay_secret",),
    "NOTIFY_SECRET": ("notify_secret",),
    "BEARER_TOKENS": ("bearer_tokens",),
    "ALLOW_ANONYMOUS": ("allow_anonymous",),
    "DATA_DIR": ("data_dir",),
    "LOG_LEVEL": ("log_level",),
}

#: Per PACS: SIDECAR_PACS_<NAME>_<suffix> -> path inside that PACS's settings.
PACS_NAMES: dict[str, tuple[str, ...]] = {
    "URL": ("url",),
    "WADO_ROOT": ("wado_root",),
    "TIMEZONE": ("timezone",),
    "PATIENT_IDENTIFIERS": ("patient_identifiers",),
    "ACCESSION_SYSTEM": ("accession_system",),
    "ENDPOINT_ID": ("endpoint_id",),
    "CHANGES": ("changes",),
    "ORTHANC_URL": ("orthanc_url",),
    "POLL_SECONDS": ("poll_seconds",),
    "RECENT_DAYS": ("recent_days",),
    "CREATE_PATIENTS": ("create_patients",),
    **AUTH_NAMES,
}

#: Names that hold secrets: read from the environment only, never from the file.
SECRET_NAMES = frozenset(
    {"RELAY_SECRET", "NOTIFY_SECRET", "BEARER_TOKENS", "REDIS_URL", "SHARED_SECRET"}
    | {f"FHIR_{k}" for k in ("PASSWORD", "TOKEN", "CLIENT_SECRET")}
)
SECRET_PACS_SUFFIXES = frozenset({"PASSWORD", "TOKEN", "CLIENT_SECRET"})

#: Names with a meaning of their own rather than a path.
PACS_LIST = "PACS"  # comma-separated PACS names
DEFAULT_IDENTIFIERS = "PATIENT_IDENTIFIERS"  # default of every PACS's PATIENT_IDENTIFIERS
DEPRECATED = {"SHARED_SECRET": "RELAY_SECRET"}  # the first wave's single secret
CONFIG = "CONFIG"  # SIDECAR_CONFIG: the TOML file itself
DEFAULT_PACS_URL = "http://127.0.0.1:8042/dicom-web"


class SourceError(ValueError):
    """The TOML file cannot be read, names an unknown setting, or holds a secret."""


def read_toml(path: str | None) -> dict[str, Any]:
    """The file's settings as flat upper-case names (``[pacs.main] url`` -> ``PACS_MAIN_URL``)."""
    if not path:
        return {}
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SourceError(f"SIDECAR_CONFIG={path}: {exc}") from exc
    flat: dict[str, Any] = {}
    _flatten(data, "", flat)
    return flat


def _flatten(data: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in data.items():
        name = f"{prefix}{key}".upper()
        if isinstance(value, Mapping):
            _flatten(value, name + "_", out)
        else:
            out[name] = value


def toml_pacs_names(path: str | None) -> list[str]:
    """The ``[pacs.NAME]`` tables of the file, in file order."""
    if not path:
        return []
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    tables = data.get("pacs")
    return [str(n).lower() for n in tables] if isinstance(tables, Mapping) else []


def pacs_names(values: Mapping[str, Any], toml_path: str | None) -> list[str]:
    listed = values.get(PACS_LIST)
    if isinstance(listed, list | tuple):
        listed = ",".join(str(v) for v in listed)
    if listed is not None:
        return [n.strip().lower() for n in str(listed).split(",") if n.strip()]
    return toml_pacs_names(toml_path) or ["main"]


def nest(values: Mapping[str, Any], toml_path: str | None = None) -> dict[str, Any]:
    """Flat names (without ``SIDECAR_``) -> the nested dict Settings validates."""
    out: dict[str, Any] = {}
    for old, new in DEPRECATED.items():
        if old in values and new not in values:
            _put(out, NAMES[new], values[old])
    for name, path in NAMES.items():
        if name in values:
            _put(out, path, values[name])
    default_ids = values.get(DEFAULT_IDENTIFIERS)
    pacs: dict[str, Any] = {}
    for pacs_name in pacs_names(values, toml_path):
        prefix = f"PACS_{pacs_name.upper()}_"
        entry: dict[str, Any] = {}
        for suffix, path in PACS_NAMES.items():
            if prefix + suffix in values:
                _put(entry, path, values[prefix + suffix])
        if "patient_identifiers" not in entry and default_ids is not None:
            entry["patient_identifiers"] = default_ids
        if pacs_name == "main":
            entry.setdefault("url", DEFAULT_PACS_URL)
        pacs[pacs_name] = entry
    out["pacs"] = pacs
    return out


def _put(out: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        out = out.setdefault(key, {})
    out[path[-1]] = value


def known_names(values: Mapping[str, Any], toml_path: str | None = None) -> Iterator[str]:
    """The names in ``values`` this table knows (the rest is a typo in a file)."""
    plain = set(NAMES) | set(DEPRECATED) | {PACS_LIST, DEFAULT_IDENTIFIERS}
    prefixes = [f"PACS_{n.upper()}_" for n in pacs_names(values, toml_path)]
    for name in values:
        if name in plain or any(
            name.startswith(p) and name[len(p) :] in PACS_NAMES for p in prefixes
        ):
            yield name


def is_secret(name: str) -> bool:
    """Whether a flat name holds a secret (passwords, tokens, secrets, the Redis URL)."""
    if name in SECRET_NAMES:
        return True
    return name.startswith("PACS_") and any(name.endswith("_" + s) for s in SECRET_PACS_SUFFIXES)


class NamedSource(PydanticBaseSettingsSource):
    """``SIDECAR_*`` variables over the TOML file, by the documented names (env wins)."""

    def __init__(self, settings_cls: type, environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)  # type: ignore[arg-type]
        self.toml_path = environ.get(PREFIX + CONFIG) or None
        file_values = read_toml(self.toml_path)
        unknown = sorted(set(file_values) - set(known_names(file_values, self.toml_path)))
        if unknown:
            raise SourceError(f"SIDECAR_CONFIG: unknown setting(s) {', '.join(unknown)}")
        leaked = sorted(n.lower() for n in file_values if is_secret(n))
        if leaked:
            raise SourceError(f"SIDECAR_CONFIG: secrets belong in the environment, not {leaked}")
        env_values = {
            k[len(PREFIX) :]: v for k, v in environ.items() if k.startswith(PREFIX) and v != ""
        }
        self.values = {**file_values, **env_values}
        ignored = set(toml_pacs_names(self.toml_path)) - set(pacs_names(self.values, None))
        if ignored and PACS_LIST in env_values:
            raise SourceError(
                f"SIDECAR_CONFIG: [pacs.{sorted(ignored)[0]}] is not one of SIDECAR_PACS "
                f"({env_values[PACS_LIST]}): a typo, or add it there"
            )

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ builds the whole dict at once

    def __call__(self) -> dict[str, Any]:
        return nest(self.values, self.toml_path)


def env_name(loc: tuple[Any, ...]) -> str | None:
    """The variable behind a validation error's location, e.g. ``SIDECAR_PACS_MAIN_URL``."""
    parts = tuple(str(p) for p in loc)
    if parts == ("pacs",):
        return PREFIX + PACS_LIST
    if len(parts) >= 2 and parts[0] == "pacs":
        inner = parts[2:]
        for suffix, path in PACS_NAMES.items():
            if inner and path == inner[: len(path)]:
                return f"{PREFIX}PACS_{parts[1].upper()}_{suffix}"
        return f"{PREFIX}PACS_{parts[1].upper()}" + ("_AUTH" if inner[:1] == ("auth",) else "")
    best = None
    for name, path in NAMES.items():
        if path == parts[: len(path)] and (best is None or len(path) > len(NAMES[best])):
            best = name
    if best is None and parts[:2] in (("fhir", "auth"),):
        best = "FHIR_AUTH"
    return PREFIX + best if best else None


def describe(error: ValidationError) -> str:
    """The first error, as ``SIDECAR_NAME: what is wrong``."""
    first = error.errors()[0]
    name = env_name(tuple(first["loc"]))
    message = str(first["msg"]).removeprefix("Value error, ")
    given = first.get("input")
    quiet = name is None or is_secret(name[len(PREFIX) :]) or name.endswith(("_URL", "_ROOT"))
    shown = f" (got {given!r})" if isinstance(given, str | int | float) and not quiet else ""
    return f"{name}: {message}{shown}" if name else message
