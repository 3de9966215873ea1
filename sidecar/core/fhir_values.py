"""FHIR value rules used on every path: the ``id`` datatype and search-token escaping.

References
----------
* FHIR R4 datatypes, ``id``: https://hl7.org/fhir/R4/datatypes.html#id
* FHIR R4 search, escaping: https://hl7.org/fhir/R4/search.html#escaping
"""

from __future__ import annotations

import re

#: R4 ``id``: 1-64 characters of ``[A-Za-z0-9\-.]``.
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_SEARCH_SPECIALS = re.compile(r"([\\,$|])")


def is_fhir_id(value: object) -> bool:
    """Whether ``value`` is a valid R4 logical id."""
    return isinstance(value, str) and bool(FHIR_ID.match(value))


def escape_search_value(value: str) -> str:
    """A value with FHIR search's special characters (``\\ , $ |``) escaped by ``\\``."""
    return _SEARCH_SPECIALS.sub(r"\\\1", value)


def identifier_token(system: str | None, value: str) -> str:
    """A token search value for this identifier: ``system|value``; ``|value`` when the
    identifier has no system (``system == ""``); ``value`` alone (any system) for None."""
    escaped = escape_search_value(value)
    return escaped if system is None else f"{escape_search_value(system)}|{escaped}"
