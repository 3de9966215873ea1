"""Stage 1 of the mapping: one DICOM record -> :class:`Facts` (FHIR-ready field values).

Each record (a study, series or instance level QIDO row, WADO-RS metadata, or a file's
Dataset) is read once, validated, and reduced to plain hashable values keyed by the
FHIR element they feed. Stage 2 (:mod:`sidecar.core.mapping.imaging_study`) merges facts per
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
from .source import DicomRecord, JsonRecord, Unreadable
from .text_loss import (
    emptied_pn_group,
    has_replacement,
    is_narrow,
    pn_question_marks,
    question_marks_replace_characters,
)
from .timing import started
from .values import (
    NONCONFORMANT_UID,
    clean_text,
    has_control_characters,
    is_conformant_uid,
    parse_cs,
    parse_modality,
    parse_tm,
    parse_tz_offset,
    parse_uid,
    parse_unsigned,
    render_pn,
)

# Why a value was ignored: the rule it broke (never the value itself).
NOT_UNSIGNED = "not an unsigned integer (IS, PS3.5 6.2; FHIR unsignedInt)"
NOT_DATE = "not a date (DA YYYYMMDD, PS3.5 6.2)"
NOT_TIME = "not a time (TM HHMMSS.FFFFFF, PS3.5 6.2)"
NOT_OFFSET = "not a UTC offset (&ZZXX from -1200 to +1400, PS3.3 C.12.1.1.8)"
NOT_UID = "not a UID (PS3.5 9.1)"
NOT_CODE = "not a code string (CS, PS3.5 6.2)"
NOT_TEXT = "not text"
UPPER_CASE = "a code string is upper case (CS, PS3.5 6.2)"
NOT_LATERALITY = "not R, L, B or U (PS3.3 C.7.3.1.1.1, C.7.6.2.1.1)"

#: A Coding frozen into a hashable, sortable form: sorted (key, value) pairs.
FrozenCoding = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Facts:
    """What one record says, per level. Empty dicts mean "nothing at that level".

    Besides FHIR-ready values, ``series["modality_invalid"]`` and
    ``instance["sop_class_invalid"]`` record that the attribute was there but unusable,
    so that stage 2 can say "invalid" rather than "missing" when it skips the item.
    """

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
    """Reads typed values from one record, recording issues against a locator.

    ``locator`` is set by the caller to the level the attributes being read belong to
    (study, series or instance), so that a study attribute repeated in every instance
    row is one issue naming the study, not one per instance.
    """

    __slots__ = ("record", "locator", "issues")

    def __init__(self, record: DicomRecord, issues: list[oc.Issue]) -> None:
        self.record = record
        self.locator = "record"
        self.issues = issues

    def warn(self, code: str, tag: int, what: str, why: str | None = None) -> None:
        self.issues.append(oc.issue(code, self.locator, tag, what, why))

    def invalid(self, tag: int, why: str) -> None:
        self.warn(oc.INVALID, tag, "invalid value ignored:", why)

    def single(self, tag: int) -> Any:
        """The first value of a single-valued attribute (VM 1); None if absent/empty or
        unreadable (which is reported)."""
        values = self.record.values(tag)
        if not values:
            return None
        if len(values) > 1:
            self.warn(oc.STRUCTURE, tag, "several values in single-valued; first used:")
        value = values[0]
        if isinstance(value, Unreadable):
            self.warn(oc.INVALID, tag, "value ignored:", value.why)
            return None
        return value

    def text(self, tag: int) -> str | None:
        value = self.single(tag)
        if value is None:
            return None
        text = clean_text(value)
        if text is None:
            if not _blank(value):
                self.invalid(tag, NOT_TEXT)
            return None
        if isinstance(value, str) and has_control_characters(value):
            self.warn(
                oc.INVALID,
                tag,
                "control characters removed from",
                "FHIR strings cannot carry them (an ESC is an undecoded ISO 2022 escape)",
            )
        return text

    def parsed(self, tag: int, parser: Any, why: str) -> Any:
        value = self.single(tag)
        if _blank(value):
            return None
        result = parser(value)
        if result is None:
            self.invalid(tag, why)
        return result

    def raw_present(self, tag: int) -> bool:
        values = self.record.values(tag)
        return bool(values) and any(not _blank(v) for v in values)

    def person(self, tag: int) -> str | None:
        value = self.single(tag)
        if value is None:
            return None
        if not isinstance(value, str):
            self.invalid(tag, NOT_TEXT)
            return None
        return render_pn(value)

    def persons(self, tag: int) -> tuple[str, ...]:
        values = self.record.values(tag) or []
        names = []
        for value in values:
            if isinstance(value, Unreadable):
                self.warn(oc.INVALID, tag, "value ignored:", value.why)
                continue
            name = render_pn(value) if isinstance(value, str) else None
            if name is None and not (isinstance(value, str) and not value.strip("^= \x00")):
                self.invalid(tag, NOT_TEXT)
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
            self.invalid(time_tag, NOT_TIME)
        if not _blank(offset) and parse_tz_offset(offset) is None:
            self.invalid(t.TIMEZONE_OFFSET_FROM_UTC, NOT_OFFSET)
        result = started(date, time, offset, zone)
        if result is None:
            self.invalid(date_tag, NOT_DATE)
            return None
        value, source = result
        return (int(source), value)

    def concepts(self, tag: int) -> tuple[Concept, ...]:
        concepts = []
        values = self.record.values(tag)
        items = self.record.items(tag)
        if values and len(items) != len(values):
            self.warn(
                oc.INVALID, tag, "malformed sequence items ignored:", "not Code Sequence items"
            )
        for item in items:
            concept = read_concept(item)
            if concept is None:
                self.warn(
                    oc.INVALID,
                    tag,
                    "code item ignored:",
                    "no CodeValue (0008,0100) and no CodeMeaning (0008,0104)",
                )
            else:
                concepts.append(concept)
        return tuple(concepts)


def _charset_terms(record: DicomRecord) -> list[str]:
    """The terms of SpecificCharacterSet (0008,0005), padding removed."""
    values = record.values(t.SPECIFIC_CHARACTER_SET) or []
    return [v.strip() for v in values if isinstance(v, str)]


def _check_charset(reader: _Reader) -> None:
    """Flag SpecificCharacterSet (0008,0005) terms that pydicom does not know (PS3.3
    C.12.1.1.2). Only for Datasets: DICOM JSON is UTF-8 whatever its label (PS3.18 F.2),
    so an unknown label changes nothing there."""
    if isinstance(reader.record, JsonRecord):
        return
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


# Text attributes checked for characters lost upstream, per level (module text_loss).
_PN_TAGS = frozenset(
    {
        t.PATIENT_NAME,
        t.REFERRING_PHYSICIAN_NAME,
        t.NAME_OF_PHYSICIANS_READING_STUDY,
        t.PERFORMING_PHYSICIAN_NAME,
    }
)
_STUDY_TEXT = (
    t.PATIENT_NAME,
    t.REFERRING_PHYSICIAN_NAME,
    t.NAME_OF_PHYSICIANS_READING_STUDY,
    t.STUDY_DESCRIPTION,
    t.REASON_FOR_REQUESTED_PROCEDURE,
    t.PROCEDURE_CODE_SEQUENCE,
)
_SERIES_TEXT = (t.SERIES_DESCRIPTION, t.PERFORMING_PHYSICIAN_NAME, t.ANATOMIC_REGION_SEQUENCE)
_INSTANCE_TEXT = (t.DOCUMENT_TITLE, t.CONCEPT_NAME_CODE_SEQUENCE)
_CODE_SEQUENCES = frozenset(
    {t.PROCEDURE_CODE_SEQUENCE, t.ANATOMIC_REGION_SEQUENCE, t.CONCEPT_NAME_CODE_SEQUENCE}
)
_UTF8_ADVICE = 'have the PACS answer in UTF-8 (ISO_IR 192; Orthanc: "DefaultEncoding": "Utf8")'


def _charset_label(terms: list[str]) -> str:
    """SpecificCharacterSet for diagnostics: known defined terms only, never free text."""
    known = [term for term in terms if term]
    if not known:
        return "the default repertoire (no SpecificCharacterSet)"
    if all(term in python_encoding for term in known):
        return "\\".join(known)
    return "an unknown character set"


def _loss_evidence(value: str, *, pn: bool, narrow: bool) -> str | None:
    """What in *value* shows that characters were lost (rules: module text_loss)."""
    if has_replacement(value):
        return "U+FFFD stands in for characters that could not be decoded"
    if not narrow:
        return None
    if pn and emptied_pn_group(value):
        return "an ideographic or phonetic name group arrived as delimiters only"
    if pn_question_marks(value) if pn else question_marks_replace_characters(value):
        return "'?' stands in for characters"
    return None


def _texts(record: DicomRecord, tag: int) -> list[str]:
    """The text values of *tag*, or the CodeMeanings (0008,0104) of a code sequence."""
    if tag in _CODE_SEQUENCES:
        values = [v for item in record.items(tag) for v in item.values(t.CODE_MEANING) or []]
    else:
        values = record.values(tag) or []
    return [v for v in values if isinstance(v, str)]


def _check_lost_text(r: _Reader, tags: tuple[int, ...]) -> None:
    """One issue per attribute whose text shows characters lost before the mapping
    (PS3.5 6.1, PS3.18 F.2; the evidence rules are in :mod:`sidecar.core.mapping.text_loss`)."""
    terms = _charset_terms(r.record)
    narrow = is_narrow(terms)
    label = _charset_label(terms)
    from_pacs = isinstance(r.record, JsonRecord)
    for tag in tags:
        for value in _texts(r.record, tag):
            evidence = _loss_evidence(value, pn=tag in _PN_TAGS, narrow=narrow)
            if evidence is None:
                continue
            if evidence.startswith("U+FFFD"):
                cause = (
                    f"the PACS could not decode the stored text or carry it in {label}; "
                    f"{_UTF8_ADVICE} and check the SpecificCharacterSet its senders declare"
                    if from_pacs
                    else f"the bytes are not valid in the record's character set ({label})"
                )
            elif from_pacs:
                cause = (
                    f"the PACS answered in {label}, a character set that cannot carry the "
                    f"text, so other text of this record may be incomplete too; {_UTF8_ADVICE}"
                )
            else:
                cause = (
                    f"the record is in {label}, a character set that cannot carry the text: "
                    "it was lost before the file was written"
                )
            r.warn(oc.INCOMPLETE, tag, "characters lost upstream in", f"{evidence}; {cause}")
            break


def _issuer(reader: _Reader, seq_tag: int) -> tuple[str | None, str | None]:
    """(system URI, local namespace) from an HL7v2 Hierarchic Designator item
    (PS3.3 Table 10-17): UniversalEntityID (0040,0032) of type ISO/UUID/URI gives a
    system; LocalNamespaceEntityID (0040,0031) is kept as the assigner's display. A
    UniversalEntityID that gives no system is reported."""
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
        else:
            reader.warn(
                oc.INVALID,
                seq_tag,
                "UniversalEntityID (0040,0032) ignored in",
                "not an ISO OID, UUID or URI of the type UniversalEntityIDType (0040,0033) "
                "declares (PS3.3 Table 10-17)",
            )
    return system, local


def patient_identity(reader: _Reader) -> tuple[str | None, str | None]:
    """(PatientID (0010,0020), IssuerOfPatientID (0010,0021)) exactly as in the data,
    minus DICOM padding."""

    def exact(tag: int) -> str | None:
        value = reader.single(tag)
        if value is None:
            return None
        if not isinstance(value, str):
            reader.invalid(tag, NOT_TEXT)
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


def _uid(r: _Reader, tag: int) -> tuple[str | None, str | None]:
    """(valid UID or None, why it is unusable or None when absent)."""
    values = r.record.values(tag)
    if not values:
        return None, None
    if len(values) > 1:
        return None, "several values in a single-valued UID"
    value = values[0]
    if isinstance(value, Unreadable):
        return None, value.why
    uid = parse_uid(value)
    return uid, None if uid else NOT_UID


def _extract_into(r: _Reader, facts: Facts, zone: ZoneInfo | None) -> None:
    study_uid, study_bad = _uid(r, t.STUDY_INSTANCE_UID)
    series_uid, series_bad = _uid(r, t.SERIES_INSTANCE_UID)
    sop_uid, sop_bad = _uid(r, t.SOP_INSTANCE_UID)
    record_at = oc.where(study_uid, series_uid, sop_uid)
    r.locator = record_at
    for tag, uid in (
        (t.STUDY_INSTANCE_UID, study_uid),
        (t.SERIES_INSTANCE_UID, series_uid),
        (t.SOP_INSTANCE_UID, sop_uid),
    ):
        if uid is not None and not is_conformant_uid(uid):
            r.warn(oc.INVALID, tag, "kept although not a conformant UID", NONCONFORMANT_UID)

    if study_uid is None:
        what = "invalid" if study_bad else "missing"
        r.warn(oc.REQUIRED, t.STUDY_INSTANCE_UID, f"record skipped, {what}", study_bad)
        return
    facts.study_uid = study_uid
    r.locator = oc.where(study_uid)
    _check_charset(r)
    _study_facts(r, facts.study, zone)
    _check_lost_text(r, _STUDY_TEXT)

    r.locator = record_at
    if series_uid is None:
        if series_bad:
            r.warn(oc.INVALID, t.SERIES_INSTANCE_UID, "series data skipped, invalid", series_bad)
        elif sop_uid or sop_bad:
            r.warn(oc.REQUIRED, t.SERIES_INSTANCE_UID, "instance skipped, missing")
        return
    facts.series_uid = series_uid
    r.locator = oc.where(study_uid, series_uid)
    _series_facts(r, facts.series, zone)
    _check_lost_text(r, _SERIES_TEXT)

    r.locator = record_at
    if sop_uid is None:
        if sop_bad:
            r.warn(oc.INVALID, t.SOP_INSTANCE_UID, "instance skipped, invalid", sop_bad)
        elif r.raw_present(t.SOP_CLASS_UID):
            r.warn(oc.REQUIRED, t.SOP_INSTANCE_UID, "instance skipped, missing")
        return
    facts.sop_uid = sop_uid
    _instance_facts(r, facts.instance)
    _check_lost_text(r, _INSTANCE_TEXT)


def _modality(r: _Reader, tag: int, value: Any) -> str | None:
    """One Modality (0008,0060) / ModalitiesInStudy (0008,0061) value as a code: lower
    case is normalised (and reported), anything else that is not a code is None."""
    parsed = parse_modality(value)
    if parsed is None:
        return None
    code, normalised = parsed
    if normalised:
        r.warn(oc.INVALID, tag, "value normalised to upper case:", UPPER_CASE)
    return code


def _study_facts(r: _Reader, out: dict[str, Any], zone: ZoneInfo | None) -> None:
    if (value := r.started(t.STUDY_DATE, t.STUDY_TIME, zone)) is not None:
        out["started"] = value
    accession = r.text(t.ACCESSION_NUMBER)
    if accession:
        system, local = _issuer(r, t.ISSUER_OF_ACCESSION_NUMBER_SEQUENCE)
        out["accession"] = (accession, system, local)
    modalities = []
    for value in r.record.values(t.MODALITIES_IN_STUDY) or []:
        if isinstance(value, Unreadable):
            r.warn(oc.INVALID, t.MODALITIES_IN_STUDY, "value ignored:", value.why)
        elif not _blank(value):
            if code := _modality(r, t.MODALITIES_IN_STUDY, value):
                modalities.append(code)
            else:
                r.invalid(t.MODALITIES_IN_STUDY, NOT_CODE)
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
    n = r.parsed(t.NUMBER_OF_STUDY_RELATED_SERIES, parse_unsigned, NOT_UNSIGNED)
    if n is not None:
        out["n_series"] = n
    n = r.parsed(t.NUMBER_OF_STUDY_RELATED_INSTANCES, parse_unsigned, NOT_UNSIGNED)
    if n is not None:
        out["n_instances"] = n
    patient = patient_identity(r)
    if patient != (None, None):
        out["patient"] = patient


def _series_facts(r: _Reader, out: dict[str, Any], zone: ZoneInfo | None) -> None:
    value = r.single(t.MODALITY)
    if not _blank(value):
        if code := _modality(r, t.MODALITY, value):
            out["modality"] = code
        else:
            out["modality_invalid"] = True  # stage 2 names it, with what it skips
    elif r.raw_present(t.MODALITY):
        out["modality_invalid"] = True  # unreadable (already named)
    number = r.parsed(t.SERIES_NUMBER, parse_unsigned, NOT_UNSIGNED)
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
    laterality = r.parsed(t.LATERALITY, parse_cs, NOT_LATERALITY)
    if laterality is not None:
        if laterality in LATERALITY_CODES:
            out["laterality"] = laterality
        elif laterality not in NO_LATERALITY:
            r.invalid(t.LATERALITY, NOT_LATERALITY)
    if performers := r.persons(t.PERFORMING_PHYSICIAN_NAME):
        out["performers"] = performers
    n = r.parsed(t.NUMBER_OF_SERIES_RELATED_INSTANCES, parse_unsigned, NOT_UNSIGNED)
    if n is not None:
        out["n_instances"] = n


def _instance_facts(r: _Reader, out: dict[str, Any]) -> None:
    sop_class = r.single(t.SOP_CLASS_UID)
    if not _blank(sop_class):
        if uid := parse_uid(sop_class):
            out["sop_class"] = uid
        else:
            out["sop_class_invalid"] = True
    number = r.parsed(t.INSTANCE_NUMBER, parse_unsigned, NOT_UNSIGNED)
    if number is not None:
        out["number"] = number
    title = r.text(t.DOCUMENT_TITLE)
    if not title:
        names = r.concepts(t.CONCEPT_NAME_CODE_SEQUENCE)
        if names:
            title = names[0][2]
    if title:
        out["title"] = title
    laterality = r.parsed(t.IMAGE_LATERALITY, parse_cs, NOT_LATERALITY)
    if laterality is not None:
        if laterality in LATERALITY_CODES:
            out["laterality"] = laterality
        elif laterality not in NO_LATERALITY:
            r.invalid(t.IMAGE_LATERALITY, NOT_LATERALITY)
