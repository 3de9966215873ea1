"""Stage 2 of the mapping: merge :class:`~sidecar.core.mapping.extract.Facts` per study and
build FHIR R4 ImagingStudy dicts (https://hl7.org/fhir/R4/imagingstudy.html).

Merging is order-independent: for every element all candidate values are counted and
the most frequent wins (ties: the smallest ``repr``), so the same records in any order
give byte-identical output. Start times prefer a zone taken from the DICOM data over the
configured zone over date-only precision.
"""

from __future__ import annotations

import base64
import copy
import enum
import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset

from . import outcome as oc
from . import tags as t
from .codes import DCM, concept_to_codeable
from .extract import NOT_CODE, NOT_UID, Facts, extract
from .laterality import combine_image_lateralities, laterality_coding
from .sop_classes import sop_class_coding
from .source import as_record
from .timing import load_zone
from .values import parse_uid

ACSN_TYPE = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]
}
DICOM_UID_SYSTEM = "urn:dicom:uid"
OTHERS_USED = "the other records' value used"


class Detail(enum.StrEnum):
    """How deep the ImagingStudy goes: study only, with series, or with instances."""

    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


@dataclass
class MappingResult:
    """ImagingStudy dicts sorted by study UID, and warnings for what was skipped."""

    studies: list[dict[str, Any]] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)


def imaging_study_id(study_uid: str) -> str:
    """Deterministic FHIR id for a study.

    The UID itself when it is a valid UID with at least one dot (<= 64 chars of digits and
    dots fits FHIR ``id``; HAPI refuses purely numeric client ids). Otherwise
    ``dcm-`` + the first 32 base32 characters of its SHA-256 (lower case).
    """
    if parse_uid(study_uid) == study_uid and "." in study_uid:
        return study_uid
    digest = hashlib.sha256(study_uid.encode("utf-8")).digest()
    return "dcm-" + base64.b32encode(digest).decode("ascii").rstrip("=").lower()[:32]


def study_identifier(study_uid: str) -> dict[str, str]:
    """ImagingStudy.identifier for StudyInstanceUID (0020,000D)."""
    return {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{study_uid}"}


def study_uid_of(study: Mapping[str, Any]) -> str | None:
    """StudyInstanceUID (0020,000D) of an ImagingStudy: the inverse of
    :func:`study_identifier` (None when it carries no ``urn:dicom:uid`` identifier)."""
    for ident in study.get("identifier") or []:
        if ident.get("system") == DICOM_UID_SYSTEM:
            return str(ident.get("value", "")).removeprefix("urn:oid:") or None
    return None


def _choose(counter: Counter) -> Any:
    """Most frequent value; ties broken by the smallest repr (order-independent)."""
    if len(counter) == 1:
        return next(iter(counter))
    return min(counter.items(), key=lambda kv: (-kv[1], repr(kv[0])))[0]


def _refines(general: tuple, specific: tuple) -> bool:
    """True if *specific* says all that *general* says: equal where *general* has a part
    (a missing qualifier is not a different one)."""
    return all(g is None or g == s for g, s in zip(general, specific, strict=True))


def _merge_qualified(counter: Counter) -> tuple[Any, int | None]:
    """Merge identifiers with optional qualifiers, e.g. (PatientID, IssuerOfPatientID):
    ``(P1, None)`` from an instance row agrees with ``(P1, HOSP-A)`` from the study row
    (Orthanc returns IssuerOfPatientID (0010,0021) at study level only).

    Returns the most complete value with the most support (ties: smallest repr) and the
    index of the first part on which two complete values disagree (None if they agree).
    """
    values = list(counter)
    if len(values) == 1:
        return values[0], None
    complete = [v for v in values if not any(v != w and _refines(v, w) for w in values)]
    support = Counter({v: sum(n for w, n in counter.items() if _refines(w, v)) for v in complete})
    chosen = _choose(support)
    if len(complete) == 1:
        return chosen, None
    others = [v for v in complete if v != chosen]
    for index in range(len(chosen)):
        if any(v[index] != chosen[index] for v in others):
            return chosen, index
    return chosen, None  # pragma: no cover - distinct complete values differ somewhere


def _best_started(counter: Counter) -> Counter:
    """The start times with the best zone evidence (timing.ZoneSource): a configured
    zone or a date-only value does not disagree with a time zoned by the DICOM data."""
    best = max(source for source, _ in counter)
    return Counter({v: n for (s, v), n in counter.items() if s == best})


# Elements whose records may disagree, with the tag a disagreement is reported on: every
# chosen element (counts take the largest report, ModalitiesInStudy the union, markers
# such as ``modality_invalid`` are not values).
_STUDY_CONFLICTS = {
    "description": t.STUDY_DESCRIPTION,
    "started": t.STUDY_DATE,
    "referrer": t.REFERRING_PHYSICIAN_NAME,
    "interpreters": t.NAME_OF_PHYSICIANS_READING_STUDY,
    "procedures": t.PROCEDURE_CODE_SEQUENCE,
    "reason": t.REASON_FOR_REQUESTED_PROCEDURE,
}
# Identifiers with optional qualifiers: (label, tag) per part on which records disagree.
_QUALIFIED: dict[str, tuple[tuple[str, int], ...]] = {
    "patient": (("patient", t.PATIENT_ID), ("patient issuer", t.ISSUER_OF_PATIENT_ID)),
    "accession": (
        ("accession", t.ACCESSION_NUMBER),
        ("accession issuer", t.ISSUER_OF_ACCESSION_NUMBER_SEQUENCE),
        ("accession issuer", t.ISSUER_OF_ACCESSION_NUMBER_SEQUENCE),
    ),
}
_SERIES_CONFLICTS = {
    "modality": t.MODALITY,
    "number": t.SERIES_NUMBER,
    "description": t.SERIES_DESCRIPTION,
    "body_site": t.BODY_PART_EXAMINED,
    "started": t.SERIES_DATE,
    "laterality": t.LATERALITY,
    "performers": t.PERFORMING_PHYSICIAN_NAME,
}
_LABELS = {"started": "start time", "sop_class": "SOP class"}
_INSTANCE_CONFLICTS = {
    "sop_class": t.SOP_CLASS_UID,
    "number": t.INSTANCE_NUMBER,
    "title": t.DOCUMENT_TITLE,
    "laterality": t.IMAGE_LATERALITY,
}


class _Series:
    __slots__ = ("fields", "instances")

    def __init__(self) -> None:
        self.fields: dict[str, Counter] = {}
        self.instances: dict[str, list[dict[str, Any]]] = {}


class _Study:
    __slots__ = ("fields", "series")

    def __init__(self) -> None:
        self.fields: dict[str, Counter] = {}
        self.series: dict[str, _Series] = {}


def _count(into: dict[str, Counter], values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        counter = into.get(key)
        if counter is None:
            into[key] = Counter((value,))
        else:
            counter[value] += 1


def _resolve(
    fields: dict[str, Counter], conflicts: Mapping[str, int], locator: str, issues: set
) -> dict[str, Any]:
    """One value per element; each value discarded because records disagree is named."""
    out: dict[str, Any] = {}
    for key, counter in fields.items():
        if key == "started":
            counter = _best_started(counter)
        if key.startswith("n_"):
            out[key] = max(counter)  # a count: the largest report is the least stale
            continue
        if key in _QUALIFIED:
            out[key], part = _merge_qualified(counter)
            if part is not None:
                label, tag = _QUALIFIED[key][part]
                issues.add(
                    oc.issue(
                        oc.CONFLICT,
                        locator,
                        tag,
                        f"records disagree on {label}, most frequent value used:",
                    )
                )
            continue
        out[key] = _choose(counter)
        if len(counter) > 1 and key in conflicts:
            issues.add(
                oc.issue(
                    oc.CONFLICT,
                    locator,
                    conflicts[key],
                    f"records disagree on {_LABELS.get(key, key.replace('_', ' '))}, "
                    "most frequent value used:",
                )
            )
    return out


class StudyAssembler:
    """Accumulates :class:`Facts` and builds ImagingStudy dicts (stage 2)."""

    def __init__(self) -> None:
        self._studies: dict[str, _Study] = {}
        self._issues: set[oc.Issue] = set()

    def add(self, facts: Facts) -> None:
        """Merge one record's facts."""
        self._issues.update(facts.issues)
        if facts.study_uid is None:
            return
        study = self._studies.get(facts.study_uid)
        if study is None:
            study = self._studies[facts.study_uid] = _Study()
        _count(study.fields, facts.study)
        if facts.series_uid is None:
            return
        series = study.series.get(facts.series_uid)
        if series is None:
            series = study.series[facts.series_uid] = _Series()
        _count(series.fields, facts.series)
        if facts.sop_uid is None:
            return
        series.instances.setdefault(facts.sop_uid, []).append(facts.instance)

    def patient_keys(self) -> dict[str, tuple[str | None, str | None]]:
        """Study UID -> its (PatientID, IssuerOfPatientID): the most complete agreeing value
        (a record without the issuer agrees with one that has it)."""
        keys = {}
        for uid, study in self._studies.items():
            counter = study.fields.get("patient")
            keys[uid] = _merge_qualified(counter)[0] if counter else (None, None)
        return keys

    def build(
        self,
        *,
        subject: Mapping[str, Any] | None = None,
        subjects: Mapping[str, Mapping[str, Any]] | None = None,
        endpoint: Mapping[str, Any] | None = None,
        accession_system: str | None = None,
        detail: Detail = Detail.INSTANCE,
    ) -> MappingResult:
        """All studies so far, sorted by UID, with the issues met while reading.

        *subjects* (study UID -> Reference) overrides *subject* per study.
        """
        issues = set(self._issues)
        per_study = subjects or {}
        studies = [
            self._build_study(
                uid,
                self._studies[uid],
                per_study.get(uid, subject),
                endpoint,
                accession_system,
                Detail(detail),
                issues,
            )
            for uid in sorted(self._studies)
        ]
        return MappingResult(studies=studies, issues=[oc.to_fhir(i) for i in sorted(issues)])

    def _build_study(
        self,
        uid: str,
        study: _Study,
        subject: Mapping[str, Any] | None,
        endpoint: Mapping[str, Any] | None,
        accession_system: str | None,
        detail: Detail,
        issues: set[oc.Issue],
    ) -> dict[str, Any]:
        f = _resolve(study.fields, _STUDY_CONFLICTS, oc.where(uid), issues)
        built_series = [
            self._build_series(uid, series_uid, study.series[series_uid], detail, issues)
            for series_uid in study.series
        ]
        resource: dict[str, Any] = {
            "resourceType": "ImagingStudy",
            "id": imaging_study_id(uid),
            "status": "available",
            "identifier": [study_identifier(uid)],
        }
        if "accession" in f:
            value, system, local = f["accession"]
            identifier: dict[str, Any] = {"type": copy.deepcopy(ACSN_TYPE), "value": value}
            system = system or accession_system
            if system:
                identifier["system"] = system
            if local:
                identifier["assigner"] = {"display": local}
            resource["identifier"].append(identifier)

        modalities = {s["modality"]["code"] for s in built_series if "modality" in s}
        if not modalities:
            for codes in study.fields.get("modalities", ()):
                modalities.update(codes)
        if modalities:
            resource["modality"] = [{"system": DCM, "code": m} for m in sorted(modalities)]
        if subject is not None:
            resource["subject"] = copy.deepcopy(dict(subject))
        if "started" in f:
            resource["started"] = f["started"]

        kept = [s for s in built_series if "modality" in s]
        n_series = f.get("n_series", len(kept) or None)
        if n_series is not None:
            resource["numberOfSeries"] = n_series
        n_instances = f.get("n_instances")
        if n_instances is None:
            counts = [s["numberOfInstances"] for s in kept if "numberOfInstances" in s]
            n_instances = sum(counts) if counts else None
        if n_instances is not None:
            resource["numberOfInstances"] = n_instances

        if "referrer" in f:
            resource["referrer"] = {"display": f["referrer"]}
        if "interpreters" in f:
            resource["interpreter"] = [{"display": name} for name in f["interpreters"]]
        if endpoint is not None:
            resource["endpoint"] = [copy.deepcopy(dict(endpoint))]
        if "procedures" in f:
            resource["procedureCode"] = [concept_to_codeable(c) for c in f["procedures"]]
        if "reason" in f:
            resource["reasonCode"] = [{"text": f["reason"]}]
        if "description" in f:
            resource["description"] = f["description"]

        if detail is not Detail.STUDY:
            kept.sort(key=lambda s: (s.get("number") is None, s.get("number", 0), s["uid"]))
            if detail is Detail.SERIES:
                for s in kept:
                    s.pop("instance", None)
            else:
                for s in kept:
                    if not s.get("instance"):
                        s.pop("instance", None)
            if kept:
                resource["series"] = kept
        return resource

    def _build_series(
        self, study_uid: str, uid: str, series: _Series, detail: Detail, issues: set
    ) -> dict[str, Any]:
        locator = oc.where(study_uid, uid)
        f = _resolve(series.fields, _SERIES_CONFLICTS, locator, issues)
        out: dict[str, Any] = {"uid": uid}
        if "number" in f:
            out["number"] = f["number"]
        if "modality" in f:
            out["modality"] = {"system": DCM, "code": f["modality"]}
            if f.get("modality_invalid"):
                issues.add(
                    oc.issue(oc.INVALID, locator, t.MODALITY, "invalid value ignored:", OTHERS_USED)
                )
        elif detail is not Detail.STUDY:
            _skipped_series(locator, f, len(series.instances), issues)
        if "description" in f:
            out["description"] = f["description"]

        instances = []
        image_lateralities = []
        for sop_uid, candidates in series.instances.items():
            fields: dict[str, Counter] = {}
            for c in candidates:
                _count(fields, c)
            inst_f = _resolve(
                fields, _INSTANCE_CONFLICTS, oc.where(study_uid, uid, sop_uid), issues
            )
            if "laterality" in inst_f:
                image_lateralities.append(inst_f["laterality"])
            inst_at = oc.where(study_uid, uid, sop_uid)
            if "sop_class" not in inst_f:
                invalid = inst_f.get("sop_class_invalid")
                issues.add(
                    oc.issue(
                        oc.REQUIRED,
                        inst_at,
                        t.SOP_CLASS_UID,
                        f"instance skipped, {'invalid' if invalid else 'missing'}",
                        NOT_UID if invalid else "R4 requires series.instance.sopClass",
                    )
                )
                continue
            if inst_f.get("sop_class_invalid"):
                issues.add(
                    oc.issue(
                        oc.INVALID, inst_at, t.SOP_CLASS_UID, "invalid value ignored:", OTHERS_USED
                    )
                )
            instance: dict[str, Any] = {
                "uid": sop_uid,
                "sopClass": sop_class_coding(inst_f["sop_class"]),
            }
            if "number" in inst_f:
                instance["number"] = inst_f["number"]
            if "title" in inst_f:
                instance["title"] = inst_f["title"]
            instances.append(instance)

        n_instances = f.get("n_instances", len(instances) or None)
        if n_instances is not None:
            out["numberOfInstances"] = n_instances
        if "body_site" in f:
            out["bodySite"] = dict(f["body_site"])
        side = f.get("laterality") or combine_image_lateralities(image_lateralities)
        if side:
            out["laterality"] = laterality_coding(side)
        if "started" in f:
            out["started"] = f["started"]
        if "performers" in f:
            out["performer"] = [{"actor": {"display": name}} for name in f["performers"]]
        if detail is Detail.INSTANCE and instances:
            instances.sort(key=lambda i: (i.get("number") is None, i.get("number", 0), i["uid"]))
            out["instance"] = instances
        return out


def _skipped_series(locator: str, f: Mapping[str, Any], n_instances: int, issues: set) -> None:
    """Name a series dropped for want of a valid Modality (0008,0060): R4 requires
    ImagingStudy.series.modality (1..1) and the mapping does not invent one."""
    invalid = bool(f.get("modality_invalid"))
    what = "invalid" if invalid else "missing"
    skipped = (
        f"series and its {n_instances} instance{'s' if n_instances != 1 else ''} skipped, {what}"
        if n_instances
        else f"series skipped, {what}"
    )
    why = NOT_CODE if invalid else "R4 requires series.modality"
    issues.add(oc.issue(oc.REQUIRED, locator, t.MODALITY, skipped, why))


def map_studies(
    records: Iterable[Mapping[str, Any] | Dataset],
    *,
    subject: dict | None = None,
    endpoint: dict | None = None,
    timezone: str | None = None,
    accession_system: str | None = None,
    detail: Detail = Detail.INSTANCE,
) -> MappingResult:
    """Map DICOM records (QIDO-RS rows of any level, WADO-RS metadata, or pydicom
    Datasets; any order, mixed) to one ImagingStudy per StudyInstanceUID.

    *subject* and *endpoint* are References put on every study (ImagingStudy.subject is
    required by R4: callers writing to a server must pass it). *timezone* is the PACS's
    IANA zone for times without TimezoneOffsetFromUTC (0008,0201); an unknown zone raises
    ValueError. *accession_system* is used when IssuerOfAccessionNumberSequence
    (0008,0051) gives none. Bad data never raises: it becomes a warning issue.
    """
    return assemble(
        extract_records(records, timezone),
        subject=subject,
        endpoint=endpoint,
        accession_system=accession_system,
        detail=detail,
    )


def extract_records(
    records: Iterable[Mapping[str, Any] | Dataset], timezone: str | None = None
) -> list[Facts]:
    """Stage 1 of :func:`map_studies` alone: each record's facts, independent of every other
    record (so a caller may extract a study's records as soon as they arrive)."""
    zone = load_zone(timezone) if timezone else None
    facts = []
    for obj in records:
        record = as_record(obj)
        if record is None:
            skipped = f"record skipped, not DICOM JSON or a Dataset ({type(obj).__name__})"
            facts.append(Facts(issues=[(oc.STRUCTURE, skipped)]))
            continue
        facts.append(extract(record, zone))
    return facts


def assemble(
    facts: Iterable[Facts],
    *,
    subject: dict | None = None,
    endpoint: dict | None = None,
    accession_system: str | None = None,
    detail: Detail = Detail.INSTANCE,
) -> MappingResult:
    """Stage 2 of :func:`map_studies`: facts, in any order, to one ImagingStudy per
    StudyInstanceUID (sorted by UID) and the issues (sorted): the same result whatever the
    order the facts came in."""
    assembler = StudyAssembler()
    for item in facts:
        assembler.add(item)
    return assembler.build(
        subject=subject, endpoint=endpoint, accession_system=accession_system, detail=detail
    )
