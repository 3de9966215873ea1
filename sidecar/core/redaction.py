"""Text that may leave the process (log lines, the sync ledger, ``dicom-fhir jobs``)
without identifier values: an MRN is PHI.

:func:`redact` removes the query string of any URL and any identifier search value
(``identifier=...``, QIDO's ``00100020=...``): that is where identifier values travel, and
where libraries print them (urllib3's retry warnings, requests' connection errors). Our own
messages already carry resource ids, StudyInstanceUIDs and counts only.
"""

from __future__ import annotations

import re
from typing import Any

#: a URL's query string (up to a space, a quote or the end), and search tokens in free text
_QUERY = re.compile(r"(\b(?:https?://|/)[^\s'\"?]*)\?[^\s'\")\]]*")
_TOKENS = re.compile(r"\b(identifier|0010002[01]|PatientID|IssuerOfPatientID)=([^\s&'\"]+)")
REDACTED = "<redacted>"


def redact(text: str) -> str:
    """``text`` without URL query strings and identifier search values."""
    text = _QUERY.sub(lambda m: f"{m.group(1)}?{REDACTED}", text)
    return _TOKENS.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


def redact_all(value: Any) -> Any:
    """:func:`redact` through strings, lists and dicts."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [redact_all(v) for v in value]
    if isinstance(value, dict):
        return {k: redact_all(v) for k, v in value.items()}
    return value
