"""Stage 1 of the mapping: one DICOM record -> :class:`Facts` (FHIR-ready field values).

Each record (a study, series or instance level QIDO row, WADO-RS metadata, or a file's
Dataset) is read once, validated, and reduced to plain hashable values keyed by the
FHIR element they feed. Stage 2 (:mod:`sidecar.mapping.imaging_study`) merges facts per
StudyInstanceUID in an order-independent way. Facts are small and picklable so that a
process pool can extract in workers and merge in the parent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from pydicom.charset import python_encoding

from . import outcome as oc
from . import tags as t
from .body_parts import body_part_coding
from .codes import Concept, concept_to_coding, read_concept
from .laterality import LATERALITY_CODES, NO_LATERALITY
from .source import DicomRecord
from .timing import started
from .values import (
    clean_text,
    parse_cs,
    parse_tm,
    parse_tz_offset,
    parse_uid,
    parse_unsigned,
    render_pn,
)

#: A Coding frozen into a hashable, sortable form: sorted (key, value) pairs.
FrozenCoding = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Facts:
    """What one record says, per level. Empty dicts mean "nothing at that level"."""

    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    study: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)
    instance: dict[str, Any] = field(default_factory=dict)
    issues: list[oc.Issue] = field(default_factory=list)


def _blank(value: Any) -> bool:
    """True for an absent or padding-only value (DICOM "empty")."""
    return value is None or (isinstance(value, str) and not value.strip(" \x00"))


def freeze_coding(coding: dict[str, Any]) -> FrozenCoding:
    """Hashable form of a flat Coding dict."""
    return tuple(sorted(coding.items()))


class _Reader:
    """Reads typed values from one record, recording issues against a locator."""

    __slots__ = ("record", "locator", "issues")

    def __init__(self, record: DicomRecord, issues: list[oc.Issue]) -> None:
        self.record = record
        self.locator = "record"
        self.issues = issues

    def warn(self, code: str, tag: int, what: str) -> None:
        self.issues.append(oc.issue(code, self.locator, tag, what))

    def single(self, tag: int) -> Any:
        """The first value of a single-valued attribute (VM 1); None if absent/empty."""
        values = self.record.values(tag)
        if not values:
            return None
        if len(values) > 1:
            self.warn(oc.STRUCTURE, tag, "several values in single-valued; first used:")
        return values[0]

    def text(self, tag: int) -> str | None:
        value = self.single(tag)
        if value is None:
            return None
        text = clean_text(value)
        if text is None and not (isinstance(value, str) and not value.strip(" \x00")):
            self.warn(oc.INVALID, tag, "invalid value ignored:")
        return text

    def parsed(self, tag: int, parser: Any) -> Any:
        value = self.single(tag)
        if _blank(value):
            return None
        result = parser(value)
        if result is None:
            self.warn(oc.INVALID, tag, "invalid value ignored:")
        return result

    def raw_present(self, tag: int) -> bool:
        values = self.record.values(tag)
        return bool(values) and any(
            not (isinstance(v, str) and not v.strip(" \x00")) for v in values
        )

    def person(self, tag: int) -> str | None:
        value = self.single(tag)
        if value is None:
            return None
        if not isinstance(value, str):
            self.warn(oc.INVALID, tag, "invalid value ignored:")
            return None
        return render_pn(value)

    def persons(self, tag: int) -> tuple[str, ...]:
        values = self.record.values(tag) or []
        names = []
        for value in values:
            name = render_pn(value) if isinstance(value, str) else None
            if name is None and not (isinstance(value, str) and not value.strip("^= \x00")):
                self.warn(oc.INVALID, tag, "invalid value ignored:")
            if name:
                names.append(name)
        return tuple(names)

    def started(self, date_tag: int, time_tag: int, zone: ZoneInfo | None) -> Any:
        """(zone source, FHIR dateTime) from a DA/TM pair and (0008,0201); see timing."""
        date = self.single(date_tag)
        if _blank(date):
            return None
        time = self.single(time_tag)
        offset = self.single(t.TIMEZONE_OFFSET_FROM_UTC)
        if not _blank(time) and parse_tm(time) is None:
            self.warn(oc.INVALID, time_tag, "invalid value ignored:")
        if not _blank(offset) and parse_tz_offset(offset) is None:
            self.warn(oc.INVALID, t.TIMEZONE_OFFSET_FROM_UTC, "invalid value ignored:")
        result = started(date, time, offset, zone)
        if result is None:
            self.warn(oc.INVALID, date_tag, "invalid value ignored:")
            return None
        value, source = result
        return (int(source), value)

    def concepts(self, tag: int) -> tuple[Concept, ...]:
        concepts = []
        values = self.record.values(tag)
        items = self.record.items(tag)
        if values and len(items) != len(values):
            self.warn(oc.INVALID, tag, "malformed sequence items ignored:")
        for item in items:
            concept = read_concept(item)
            if concept is None:
                self.warn(oc.INVALID, tag, "code item without value or meaning ignored:")
            else:
                concepts.append(concept)
        return tuple(concepts)


def _check_charset(reader: _Reader) -> None:
    """Flag SpecificCharacterSet (0008,0005) terms that the decoder does not know."""
    values = reader.record.values(t.SPECIFIC_CHARACTER_SET)
    if not values:
        return
    for value in values:
        term = value.strip() if isinstance(value, str) else None
        if term is None or (term and term not in python_encoding):
            reader.warn(
                oc.NOT_SUPPORTED,
                t.SPECIFIC_CHARACTER_SET,
                "unknown term, text decoded with a fallback character set:",
            )
            return


def _issuer(reader: _Reader, seq_tag: int) -> tuple[str | None, str | None]:
    """(system URI, local namespace) from an HL7v2 Hierarchic Designator item
    (PS3.3 Table 10-17): UniversalEntityID (0040,0032) of type ISO/UUID/URI gives a
    system; LocalNamespaceEntityID (0040,0031) is kept as the assigner's display."""
    items = reader.record.items(seq_tag)
    if not items:
        return None, None
    item = items[0]

    def first(tag: int) -> str | None:
        values = item.values(tag)
        return clean_text(values[0]) if values else None

    local = first(t.LOCAL_NAMESPACE_ENTITY_ID)
    universal = first(t.UNIVERSAL_ENTITY_ID)
    kind = (first(t.UNIVERSAL_ENTITY_ID_TYPE) or "").upper()
    system = None
    if universal:
        if kind == "ISO" and parse_uid(universal):
            system = f"urn:oid:{universal}"
        elif kind == "UUID":
            system = f"urn:uuid:{universal.lower()}"
        elif kind in ("URI", "URL") and ":" in universal and " " not in universal:
            system = universal
    return system, local


def patient_identity(reader: _Reader) -> tuple[str | None, str | None]:
    """(PatientID (0010,0020), IssuerOfPatientID (0010,0021)) exactly as in the data,
    minus DICOM padding."""

    def exact(tag: int) -> str | None:
        value = reader.single(tag)
        if not isinstance(value, str):
            return None
        return value.strip(" \x00") or None

    return exact(t.PATIENT_ID), exact(t.ISSUER_OF_PATIENT_ID)


def extract(record: DicomRecord, zone: ZoneInfo | None = None) -> Facts:
    """Read one record into :class:`Facts`. Never raises for bad data."""
    facts = Facts()
    r = _Reader(record, facts.issues)
    try:
        _extract_into(r, facts, zone)
    except Exception as exc:  # a defect here must not sink the batch
        facts.study_uid = facts.series_uid = facts.sop_uid = None
        r.issues.append(
            (oc.STRUCTURE, f"{r.locator}: record skipped, unreadable ({type(exc).__name__})")
        )
    return facts


def _uid(r: _Reader, tag: int) -> tuple[str | None, bool]:
    """(valid uid or None, present?)."""
    values = r.record.values(tag)
    if not values:
        return None, False
    if len(values) > 1:
        return None, True
    return parse_uid(values[0]), True


def _extract_into(r: _Reader, facts: Facts, zone: ZoneInfo | None) -> None:
    study_uid, study_present = _uid(r, t.STUDY_INSTANCE_UID)
    series_uid, series_present = _uid(r, t.SERIES_INSTANCE_UID)
    sop_uid, sop_present = _uid(r, t.SOP_INSTANCE_UID)
    r.locator = oc.where(study_uid, series_uid, sop_uid)

    if study_uid is None:
        what = "invalid" if study_present else "missing"
        r.warn(oc.REQUIRED, t.STUDY_INSTANCE_UID, f"record skipped, {what}")
        return
    facts.study_uid = study_uid
    _check_charset(r)
    _study_facts(r, facts.study, zone)

    if series_uid is None:
        if series_present:
            r.warn(oc.INVALID, t.SERIES_INSTANCE_UID, "series data skipped, invalid")
        elif sop_present:
            r.warn(oc.REQUIRED, t.SERIES_INSTANCE_UID, "instance skipped, missing")
        return
    facts.series_uid = series_uid
    _series_facts(r, facts.series, zone)

    if sop_uid is None:
        if sop_present:
            r.warn(oc.INVALID, t.SOP_INSTANCE_UID, "instance skipped, invalid")
        elif r.raw_present(t.SOP_CLASS_UID):
            r.warn(oc.REQUIRED, t.SOP_INSTANCE_UID, "instance skipped, missing")
        return
    facts.sop_uid = sop_uid
    _instance_facts(r, facts.instance)


def _study_facts(r: _Reader, out: dict[str, Any], zone: ZoneInfo | None) -> None:
    if (value := r.started(t.STUDY_DATE, t.STUDY_TIME, zone)) is not None:
        out["started"] = value
    accession = r.text(t.ACCESSION_NUMBER)
    if accession:
        system, local = _issuer(r, t.ISSUER_OF_ACCESSION_NUMBER_SEQUENCE)
        out["accession"] = (accession, system, local)
    modalities = []
    for value in r.record.values(t.MODALITIES_IN_STUDY) or []:
        code = parse_cs(value)
        if code is None:
            if not (isinstance(value, str) and not value.strip()):
                r.warn(oc.INVALID, t.MODALITIES_IN_STUDY, "invalid value ignored:")
        else:
            modalities.append(code)
    if modalities:
        out["modalities"] = tuple(sorted(set(modalities)))
    if referrer := r.person(t.REFERRING_PHYSICIAN_NAME):
        out["referrer"] = referrer
    if readers := r.persons(t.NAME_OF_PHYSICIANS_READING_STUDY):
        out["interpreters"] = readers
    if description := r.text(t.STUDY_DESCRIPTION):
        out["description"] = description
    if procedures := r.concepts(t.PROCEDURE_CODE_SEQUENCE):
        out["procedures"] = procedures
    if reason := r.text(t.REASON_FOR_REQUESTED_PROCEDURE):
        out["reason"] = reason
    n = r.parsed(t.NUMBER_OF_STUDY_RELATED_SERIES, parse_unsigned)
    if n is not None:
        out["n_series"] = n
    n = r.parsed(t.NUMBER_OF_STUDY_RELATED_INSTANCES, parse_unsigned)
    if n is not None:
        out["n_instances"] = n
    patient = patient_identity(r)
    if patient != (None, None):
        out["patient"] = patient


def _series_facts(r: _Reader, out: dict[str, Any], zone: ZoneInfo | None) -> None:
    if modality := r.parsed(t.MODALITY, parse_cs):
        out["modality"] = modality
    number = r.parsed(t.SERIES_NUMBER, parse_unsigned)
    if number is not None:
        out["number"] = number
    if description := r.text(t.SERIES_DESCRIPTION):
        out["description"] = description
    if (value := r.started(t.SERIES_DATE, t.SERIES_TIME, zone)) is not None:
        out["started"] = value
    regions = r.concepts(t.ANATOMIC_REGION_SEQUENCE)
    if regions:
        out["body_site"] = freeze_coding(concept_to_coding(regions[0]))
    elif body_part := r.text(t.BODY_PART_EXAMINED):
        out["body_site"] = freeze_coding(body_part_coding(body_part))
    laterality = r.parsed(t.LATERALITY, parse_cs)
    if laterality is not None:
        if laterality in LATERALITY_CODES:
            out["laterality"] = laterality
        elif laterality not in NO_LATERALITY:
            r.warn(oc.INVALID, t.LATERALITY, "invalid value ignored:")
    if performers := r.persons(t.PERFORMING_PHYSICIAN_NAME):
        out["performers"] = performers
    n = r.parsed(t.NUMBER_OF_SERIES_RELATED_INSTANCES, parse_unsigned)
    if n is not None:
        out["n_instances"] = n


def _instance_facts(r: _Reader, out: dict[str, Any]) -> None:
    sop_class = r.parsed(t.SOP_CLASS_UID, parse_uid)
    if sop_class:
        out["sop_class"] = sop_class
    number = r.parsed(t.INSTANCE_NUMBER, parse_unsigned)
    if number is not None:
        out["number"] = number
    title = r.text(t.DOCUMENT_TITLE)
    if not title:
        names = r.concepts(t.CONCEPT_NAME_CODE_SEQUENCE)
        if names:
            title = names[0][2]
    if title:
        out["title"] = title
    laterality = r.parsed(t.IMAGE_LATERALITY, parse_cs)
    if laterality is not None:
        if laterality in LATERALITY_CODES:
            out["laterality"] = laterality
        elif laterality not in NO_LATERALITY:
            r.warn(oc.INVALID, t.IMAGE_LATERALITY, "invalid value ignored:")
