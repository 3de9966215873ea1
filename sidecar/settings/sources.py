"""Where the settings come from: the documented ``SIDECAR_*`` names and the TOML file.

Both are pydantic-settings' own source classes: :class:`DocumentedEnvSource` (an
``EnvSettingsSource`` over the names derived from the models, ``<NAME>_FILE`` for every
secret, unknown names refused) and :class:`SettingsFile` (a ``TomlConfigSettingsSource``
shaped like the models, secrets refused). :func:`load_settings` merges them (environment
over file) and validates once; :func:`describe` names the variable behind an error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, TomlConfigSettingsSource
from pydantic_settings.sources.utils import parse_env_vars

from sidecar.settings.models import PacsSettings, Settings, SettingsError

PREFIX = "SIDECAR_"


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
