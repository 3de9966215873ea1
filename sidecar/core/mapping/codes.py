"""Coded concepts (PS3.3 Table 8.8-1 Code Sequence Macro) -> FHIR Coding/CodeableConcept.

Coding scheme designators (PS3.16 Section 8) map to FHIR system URIs; legacy SNOMED-RT
(``SRT``) codes are translated to SNOMED CT through pydicom's PS3.16 table.
"""

from __future__ import annotations

from typing import Any

from . import tags as t
from .source import DicomRecord
from .values import clean_text

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
UMLS = "http://www.nlm.nih.gov/research/umls"

#: Coding scheme designator -> FHIR system, the ones the mapping notes name.
SCHEME_SYSTEMS: dict[str, str] = {
    "SCT": SNOMED,
    "SNM3": SNOMED,  # only reachable through the SRT translation below
    "LN": LOINC,
    "DCM": DCM,
}

try:  # a private module of pydicom; the mapping still works without it
    from pydicom.sr._snomed_dict import mapping as _SNOMED_MAP

    _SRT_TO_SCT: dict[str, str] = dict(_SNOMED_MAP.get("SRT", {}))
except Exception:  # pragma: no cover - depends on the pydicom build
    _SRT_TO_SCT = {}

#: A coded concept as read from DICOM: (designator, value, meaning), any may be None.
Concept = tuple[str | None, str | None, str | None]


def read_concept(item: DicomRecord) -> Concept | None:
    """Read one Code Sequence item: (0008,0102) designator, (0008,0100)/(0008,0119)/
    (0008,0120) value and (0008,0104) meaning. None when nothing usable is there."""

    def first(tag: int) -> str | None:
        values = item.values(tag)
        return clean_text(values[0]) if values else None

    designator = first(t.CODING_SCHEME_DESIGNATOR)
    value = first(t.CODE_VALUE) or first(t.LONG_CODE_VALUE) or first(t.URN_CODE_VALUE)
    meaning = first(t.CODE_MEANING)
    if value is None and meaning is None:
        return None
    if designator is not None:
        designator = designator.upper()
    return designator, value, meaning


def concept_system(designator: str | None, value: str | None) -> tuple[str, str] | None:
    """(system, code) for a concept in a known scheme, translating SRT to SCT."""
    if designator is None or value is None:
        return None
    if designator == "SRT":
        sct = _SRT_TO_SCT.get(value)
        return (SNOMED, sct) if sct else None
    system = SCHEME_SYSTEMS.get(designator)
    return (system, value) if system else None


def concept_to_coding(concept: Concept) -> dict[str, Any]:
    """A FHIR Coding. A concept of an unknown scheme (or an SRT code without a SNOMED CT
    translation) has no system to put its code under, so designator and code go into
    ``display`` after the meaning, as ``text`` does in :func:`concept_to_codeable`:
    nothing of the DICOM item is dropped."""
    designator, value, meaning = concept
    coding: dict[str, Any] = {}
    known = concept_system(designator, value)
    if known:
        coding["system"], coding["code"] = known
        if meaning:
            coding["display"] = meaning
        return coding
    coding["display"] = _unknown_scheme_text(concept)
    return coding


def _unknown_scheme_text(concept: Concept) -> str:
    """``Meaning (DESIGNATOR CODE)``, or whichever parts there are."""
    designator, value, meaning = concept
    label = " ".join(p for p in (designator, value) if p)
    return f"{meaning} ({label})" if meaning and label else (meaning or label)


def concept_to_codeable(concept: Concept) -> dict[str, Any]:
    """A FHIR CodeableConcept; unknown schemes keep designator and code in ``text``."""
    designator, value, meaning = concept
    known = concept_system(designator, value)
    if known:
        coding: dict[str, Any] = {"system": known[0], "code": known[1]}
        if meaning:
            coding["display"] = meaning
        result: dict[str, Any] = {"coding": [coding]}
        if meaning:
            result["text"] = meaning
        return result
    return {"text": _unknown_scheme_text(concept)}
