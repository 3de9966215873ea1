"""Pure QIDO-RS decisions: which identifiers may be queried, how values are sent, what matches.

Patient isolation rests on three rules, each a function here so that tests can table them:

1. ``check_match_value`` refuses values a PACS could read as matching syntax (PS3.4 C.2.2.2:
   ``*`` and ``?`` wildcards, ``\\`` value multiplicity, ``,`` Orthanc's value list) and
   empty values (universal matching: every study).
2. ``qido_value`` writes a value so that it needs no percent-encoding. Orthanc 1.10 does not
   decode percent-encoded filter values, so a character outside RFC 3986's unreserved set is
   sent as the single-character wildcard ``?`` (a run of non-ASCII characters as ``*``): the
   query can then only match *more* studies, never fewer.
3. ``is_exact_patient`` (and ``matches_criteria``) check every returned record exactly
   (case-sensitive, issuer included where configured); anything else is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

# DICOM tags (group+element) used in QIDO queries and checks.
PATIENT_ID = "00100020"  # (0010,0020) PatientID, LO
ISSUER_OF_PATIENT_ID = "00100021"  # (0010,0021) IssuerOfPatientID, LO
STUDY_INSTANCE_UID = "0020000D"  # (0020,000D)
SERIES_INSTANCE_UID = "0020000E"  # (0020,000E)
SOP_INSTANCE_UID = "00080018"  # (0008,0018)
STUDY_DATE = "00080020"  # (0008,0020) DA
ACCESSION_NUMBER = "00080050"  # (0008,0050) SH
MODALITIES_IN_STUDY = "00080061"  # (0008,0061) CS, multi-valued
MODALITY = "00080060"  # (0008,0060)

MAX_LO_LENGTH = 64
_UNRESERVED = re.compile(r"[A-Za-z0-9\-._~]")
_MATCHING_SYNTAX = {"*": "wildcard", "?": "wildcard", "\\": "value separator", ",": "value list"}
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_MODALITY = re.compile(r"^[A-Z0-9_]{1,16}$")

# Fields asked for per level; Orthanc returns StudyDescription only when asked.
STUDY_FIELDS = (
    ISSUER_OF_PATIENT_ID,  # returned by Orthanc only when asked or used as a filter
    "00081030",  # StudyDescription
    "00080090",  # ReferringPhysicianName
    "00081060",  # NameOfPhysiciansReadingStudy
    "00081032",  # ProcedureCodeSequence
    "00401002",  # ReasonForRequestedProcedure
    "00080051",  # IssuerOfAccessionNumberSequence
    "00080201",  # TimezoneOffsetFromUTC
    "00201206",  # NumberOfStudyRelatedSeries
    "00201208",  # NumberOfStudyRelatedInstances
)
SERIES_FIELDS = (
    PATIENT_ID,  # whose each row is: checked against the study record (pacs_answers)
    ISSUER_OF_PATIENT_ID,
    "0008103E",  # SeriesDescription
    "00180015",  # BodyPartExamined
    "00082218",  # AnatomicRegionSequence
    "00200060",  # Laterality
    "00080021",  # SeriesDate
    "00080031",  # SeriesTime
    "00081050",  # PerformingPhysicianName
    "00201209",  # NumberOfSeriesRelatedInstances
)
INSTANCE_FIELDS = (
    *SERIES_FIELDS,
    "00200062",  # ImageLaterality
    "00420010",  # DocumentTitle
    "0040A043",  # ConceptNameCodeSequence
)


class RefusedValue(ValueError):
    """A value that cannot be sent to a PACS without risking other patients' studies. The
    message says why, never the value itself (it may be an MRN: it reaches logs)."""


def check_match_value(value: str | None, *, what: str = "identifier") -> str:
    """Return the value as DICOM compares it (LO/SH: surrounding spaces are padding).

    Raises RefusedValue for empty values, matching syntax, control characters and values
    longer than a DICOM LO (64 characters).
    """
    text = (value or "").strip(" ")
    if not text:
        raise RefusedValue(f"{what} is empty; an empty QIDO filter matches every patient")
    for char, meaning in _MATCHING_SYNTAX.items():
        if char in text:
            raise RefusedValue(
                f"{what} contains {char!r}, which a PACS reads as {meaning} matching"
            )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise RefusedValue(f"{what} contains control characters")
    if len(text) > MAX_LO_LENGTH:
        raise RefusedValue(f"{what} is longer than {MAX_LO_LENGTH} characters (DICOM LO)")
    if not any(_UNRESERVED.fullmatch(c) for c in text):
        raise RefusedValue(
            f"{what} has no character that can be sent literally; it cannot be matched selectively"
        )
    return text


def qido_value(value: str) -> str:
    """The value as sent: unreserved characters literal, others as wildcards (see module doc).

    ``check_match_value`` must have accepted the value first.
    """
    out: list[str] = []
    for char in value:
        if _UNRESERVED.fullmatch(char):
            out.append(char)
        elif ord(char) < 0x80:
            out.append("?")
        elif not out or out[-1] != "*":
            out.append("*")
    return "".join(out)


def is_uid(value: str) -> bool:
    """A DICOM UID (PS3.5 9.1): digits and dots, no leading zeros, at most 64 characters."""
    return len(value) <= 64 and bool(_UID.match(value))


def is_modality(value: str) -> bool:
    """A DICOM Modality (0008,0060) defined term shape (CS, upper case)."""
    return bool(_MODALITY.match(value))


@dataclass(frozen=True)
class StudyCriteria:
    """Optional narrowing of a patient's studies (all exact; None = no constraint)."""

    modalities: frozenset[str] = frozenset()
    study_date_ge: date | None = None
    study_date_le: date | None = None
    accession: str | None = None
    study_instance_uid: str | None = None

    @property
    def is_complete(self) -> bool:
        """True when the criteria select every study of the patient."""
        return not (
            self.modalities
            or self.study_date_ge
            or self.study_date_le
            or self.accession
            or self.study_instance_uid
        )


def dicom_date_range(ge: date | None, le: date | None) -> str | None:
    """A DA range matching value (PS3.4 C.2.2.2.5): ``YYYYMMDD-``, ``-YYYYMMDD`` or both."""
    if ge is None and le is None:
        return None
    low = ge.strftime("%Y%m%d") if ge else ""
    high = le.strftime("%Y%m%d") if le else ""
    return low if low and low == high else f"{low}-{high}"


def study_filters(
    patient_id: str, issuer: str | None, criteria: StudyCriteria
) -> list[tuple[str, str]]:
    """The study-level QIDO filters (key, already-safe value) for one patient identifier."""
    filters = [(PATIENT_ID, qido_value(check_match_value(patient_id)))]
    if issuer is not None:
        filters.append((ISSUER_OF_PATIENT_ID, qido_value(check_match_value(issuer, what="issuer"))))
    date_range = dicom_date_range(criteria.study_date_ge, criteria.study_date_le)
    if date_range:
        filters.append((STUDY_DATE, date_range))
    if criteria.accession:
        filters.append(
            (ACCESSION_NUMBER, qido_value(check_match_value(criteria.accession, what="accession")))
        )
    if criteria.study_instance_uid:
        filters.append((STUDY_INSTANCE_UID, criteria.study_instance_uid))
    if len(criteria.modalities) == 1:
        filters.append((MODALITIES_IN_STUDY, next(iter(criteria.modalities))))
    return filters


def query_string(
    filters: Iterable[tuple[str, str]],
    *,
    fields: Sequence[str] = (),
    limit: int | None = None,
    offset: int | None = None,
) -> str:
    """``key=value&...`` with values sent as they are (they are unreserved or wildcards)."""
    parts = [f"{key}={value}" for key, value in filters]
    parts.extend(f"includefield={f}" for f in fields)
    if limit is not None:
        parts.append(f"limit={limit}")
    if offset:
        parts.append(f"offset={offset}")
    return "&".join(parts)


def first_value(record: Mapping[str, object], tag: str) -> str | None:
    """The first value of a DICOM JSON attribute as a string (padding stripped), or None."""
    element = record.get(tag)
    if not isinstance(element, Mapping):
        return None
    values = element.get("Value")
    if not isinstance(values, list) or not values or values[0] is None:
        return None
    return str(values[0]).strip(" ")


def all_values(record: Mapping[str, object], tag: str) -> list[str]:
    element = record.get(tag)
    if not isinstance(element, Mapping) or not isinstance(element.get("Value"), list):
        return []
    return [str(v).strip(" ") for v in element["Value"] if v is not None]


def is_exact_patient(record: Mapping[str, object], patient_id: str, issuer: str | None) -> bool:
    """PatientID equal (case-sensitive), and IssuerOfPatientID equal when one is configured."""
    if first_value(record, PATIENT_ID) != patient_id:
        return False
    return issuer is None or first_value(record, ISSUER_OF_PATIENT_ID) == issuer


def matches_criteria(record: Mapping[str, object], criteria: StudyCriteria) -> bool:
    """Check a study-level record against the criteria exactly (the PACS may match loosely)."""
    uid = first_value(record, STUDY_INSTANCE_UID)
    if not uid or not is_uid(uid):
        return False
    if criteria.study_instance_uid and uid != criteria.study_instance_uid:
        return False
    if criteria.accession and first_value(record, ACCESSION_NUMBER) != criteria.accession:
        return False
    if criteria.modalities and not criteria.modalities & set(
        all_values(record, MODALITIES_IN_STUDY)
    ):
        return False
    if criteria.study_date_ge or criteria.study_date_le:
        text = first_value(record, STUDY_DATE) or ""
        if not re.fullmatch(r"\d{8}", text):
            return False
        try:
            day = date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            return False
        if criteria.study_date_ge and day < criteria.study_date_ge:
            return False
        if criteria.study_date_le and day > criteria.study_date_le:
            return False
    return True
