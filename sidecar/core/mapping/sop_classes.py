"""SOP Class UID (0008,0016) -> name and FHIR Coding (PS3.4 Annex B, PS3.6 Annex A)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydicom.uid import UID

#: System for URIs (RFC 3986); the code is ``urn:oid:<uid>``.
URI_SYSTEM = "urn:ietf:rfc:3986"


@lru_cache(maxsize=1024)
def sop_class_name(uid: str) -> str | None:
    """The registered name of a SOP class (e.g. "CT Image Storage"), None if unknown."""
    name = UID(uid).name
    return None if name == uid else name


def sop_class_coding(uid: str) -> dict[str, Any]:
    """ImagingStudy.series.instance.sopClass for a (valid) SOP Class UID."""
    coding: dict[str, Any] = {"system": URI_SYSTEM, "code": f"urn:oid:{uid}"}
    name = sop_class_name(uid)
    if name:
        coding["display"] = name
    return coding
