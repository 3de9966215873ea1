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

from sidecar.settings.models import (
    DEFAULT_PACS_URL,
    AuditSettings,
    AuthSettings,
    ChangeFeed,
    FhirSettings,
    GatewaySettings,
    HttpAuth,
    IdentifierMapping,
    NoChangeFeed,
    OrthancChangeLog,
    PacsSettings,
    QidoPoll,
    QidoSettings,
    Settings,
    SettingsError,
    SyncSettings,
)
from sidecar.settings.sources import (
    CONFIG,
    DEFAULT_IDENTIFIERS,
    DEPRECATED,
    FIXED_NAMES,
    PACS_FIELD_NAMES,
    PACS_LIST,
    describe,
    env_name,
    load_settings,
)

__all__ = [
    "CONFIG",
    "DEFAULT_IDENTIFIERS",
    "DEFAULT_PACS_URL",
    "DEPRECATED",
    "FIXED_NAMES",
    "PACS_FIELD_NAMES",
    "PACS_LIST",
    "AuditSettings",
    "AuthSettings",
    "ChangeFeed",
    "FhirSettings",
    "GatewaySettings",
    "HttpAuth",
    "IdentifierMapping",
    "NoChangeFeed",
    "OrthancChangeLog",
    "PacsSettings",
    "QidoPoll",
    "QidoSettings",
    "Settings",
    "SettingsError",
    "SyncSettings",
    "describe",
    "env_name",
    "load_settings",
]
