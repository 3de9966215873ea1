"""What a caller may retrieve from a PACS through the imaging gateway, decided as data.

The FHIR server decides: a caller may see a study when the FHIR server, asked with the
caller's own token, shows it the ImagingStudy of that StudyInstanceUID with this PACS's
Endpoint. That ImagingStudy lists the series and instances the sync took from the PACS for
its Patient, so a StudyInstanceUID the PACS also files under another patient exposes only
this patient's part. :class:`StudyAccess` is that answer; the functions below apply it to
what the PACS returns (SMART Imaging Access, "Retrieving images": the checks apply to every
retrieval form, and a full-study request never returns a partial study).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.core import qido
from sidecar.core.identity import PatientKey
from sidecar.core.mapping import study_uid_of

Record = dict[str, Any]
SERIES_UID, SOP_INSTANCE_UID = "0020000E", "00080018"
RETRIEVE_URL = "00081190"  # RetrieveURL (0008,1190), PS3.18 Table 10.6.3-3
#: A URL into a DICOMweb root: everything before "/studies/" is the PACS's own address.
_DICOMWEB_URL = re.compile(r"^https?://[^\s]*?(/studies/[^\s]*)$")


@dataclass(frozen=True)
class StudyAccess:
    """One study a caller may see, as the FHIR server showed it to that caller."""

    study_uid: str
    study_id: str  # the ImagingStudy's id
    patient_id: str | None  # the subject's Patient id
    #: series UID -> instance UIDs the ImagingStudy lists (an empty set: none listed)
    series: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: the subject's keys for this PACS (PatientID, issuer): whose rows are this patient's
    keys: tuple[PatientKey, ...] = ()

    def has_series(self, series_uid: str) -> bool:
        return series_uid in self.series

    def has_instance(self, series_uid: str, instance_uid: str) -> bool:
        return instance_uid in self.series.get(series_uid, frozenset())

    def names_patient(self, record: Mapping[str, Any], *, issuer_checked: bool = False) -> bool:
        """Whether a PACS record names this study's patient (PatientID, IssuerOfPatientID)
        exactly; a record naming no PatientID is judged by its UIDs alone.

        ``issuer_checked``: the rows of this study were already judged with their
        IssuerOfPatientID (0010,0021), so a record that leaves the issuer out is judged by its
        PatientID (0010,0020): Orthanc's study-level metadata with ``StudiesMetadata:
        MainDicomTags`` carries no issuer at all. A record naming another issuer never is."""
        if qido.first_value(record, qido.PATIENT_ID) is None:
            return True
        if any(qido.is_exact_patient(record, k.patient_id, k.issuer) for k in self.keys):
            return True
        if not issuer_checked or qido.first_value(record, qido.ISSUER_OF_PATIENT_ID) is not None:
            return False
        return any(qido.is_exact_patient(record, k.patient_id, None) for k in self.keys)


def study_access(
    study: Mapping[str, Any], endpoint_ref: str, keys: Iterable[PatientKey]
) -> StudyAccess | None:
    """The access an ImagingStudy (as the caller's FHIR read returned it) gives to the
    PACS of ``endpoint_ref`` (``Endpoint/<id>``); None when it names another PACS only or
    has no StudyInstanceUID."""
    uid = study_uid_of(dict(study))
    if uid is None:
        return None
    if not any((e or {}).get("reference") == endpoint_ref for e in study.get("endpoint") or []):
        return None
    series = {
        str(s.get("uid")): frozenset(str(i.get("uid")) for i in s.get("instance") or [])
        for s in study.get("series") or []
        if s.get("uid")
    }
    subject = ((study.get("subject") or {}).get("reference") or "").removeprefix("Patient/")
    return StudyAccess(uid, str(study.get("id")), subject or None, series, tuple(keys))


def whole_is_allowed(
    access: StudyAccess, series_uid: str | None, pacs_rows: Iterable[Record]
) -> bool:
    """A study- or series-level retrieval returns everything the PACS holds there: allowed
    only when all of it is the caller's (``pacs_rows``: the PACS's series of the study, or
    its instances of the series)."""
    for row in pacs_rows:
        if not access.names_patient(row):
            return False
        if series_uid is None:
            if not access.has_series(qido.first_value(row, SERIES_UID) or ""):
                return False
        elif not access.has_instance(series_uid, qido.first_value(row, SOP_INSTANCE_UID) or ""):
            return False
    return True


def visible_rows(
    rows: Iterable[Record],
    access: Mapping[str, StudyAccess],
    level: str,
    *,
    issuer_checked: bool = False,
) -> list[Record]:
    """The QIDO rows (or metadata items) a caller may see: its studies, their listed series
    and instances, rows naming its patient; everything else is left out unseen.
    ``issuer_checked``: see :meth:`StudyAccess.names_patient` (metadata after
    :func:`whole_is_allowed` judged the PACS's rows)."""
    kept = []
    for row in rows:
        study = access.get(qido.first_value(row, qido.STUDY_INSTANCE_UID) or "")
        if study is None or not study.names_patient(row, issuer_checked=issuer_checked):
            continue
        series = qido.first_value(row, SERIES_UID)
        if level in ("series", "instance") and not (series and study.has_series(series)):
            continue
        instance = qido.first_value(row, SOP_INSTANCE_UID)
        if level == "instance" and not (instance and study.has_instance(series or "", instance)):
            continue
        kept.append(row)
    return kept


def rewrite_urls(value: Any, gateway_root: str) -> Any:
    """DICOM JSON with every RetrieveURL and BulkDataURI that points into a DICOMweb root
    pointed at the gateway instead (the PACS's own address is no use to a client, and a
    client must send its token only to the gateway)."""
    if isinstance(value, list):
        return [rewrite_urls(v, gateway_root) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, element in value.items():
        if isinstance(element, dict):
            element = dict(element)
            if isinstance(element.get("BulkDataURI"), str):
                element["BulkDataURI"] = _rebased(element["BulkDataURI"], gateway_root)
            if key == RETRIEVE_URL and isinstance(element.get("Value"), list):
                element["Value"] = [_rebased(str(v), gateway_root) for v in element["Value"]]
            if isinstance(element.get("Value"), list):
                element["Value"] = [rewrite_urls(v, gateway_root) for v in element["Value"]]
        out[key] = element
    return out


def _rebased(url: str, gateway_root: str) -> str:
    match = _DICOMWEB_URL.match(url)
    return f"{gateway_root}{match.group(1)}" if match else ""
