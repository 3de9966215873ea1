"""Backfill planning, pure: the StudyDate windows a PACS is walked by, and each window's
studies grouped by exact PACS patient (PatientID (0010,0020) + IssuerOfPatientID (0010,0021)).

Windows: ``--since``/``--until`` bound the walk; without ``--since`` a first, open-started
window covers everything before 2000-01-01, and without ``--until`` a last, open-ended window
covers dates after today. Studies without a StudyDate (0008,0020) cannot be found by date
and are not backfilled (QIDO has no "empty" match, PS3.18 8.3.4.1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sidecar.core import qido
from sidecar.core.identity import DicomPatient

Record = dict[str, Any]
DEFAULT_SINCE = date(2000, 1, 1)
DEFAULT_WINDOW_DAYS = 90
#: Patient tags asked for at study level (Orthanc returns the first four anyway).
PATIENT_FIELDS = ("00100010", "00100030", "00100040", qido.ISSUER_OF_PATIENT_ID)


@dataclass(frozen=True, order=True)
class Window:
    """StudyDate from ``start`` to ``end``, both inclusive; None = open on that side."""

    start: date | None
    end: date | None

    @property
    def label(self) -> str:
        """``YYYYMMDD-YYYYMMDD`` as in a DICOM DA range (open sides empty)."""
        return qido.dicom_date_range(self.start, self.end) or "-"

    @property
    def criteria(self) -> qido.StudyCriteria:
        return qido.StudyCriteria(study_date_ge=self.start, study_date_le=self.end)


def date_windows(
    since: date | None, until: date | None, days: int, *, today: date | None = None
) -> list[Window]:
    """Consecutive, non-overlapping windows of ``days`` days covering ``since``..``until``.

    Without ``since`` the walk starts at 2000-01-01 after an open-started window for older
    studies; without ``until`` it ends today, followed by an open-ended window.
    """
    if days < 1:
        raise ValueError("window days must be at least 1")
    today = today or date.today()
    first = since or DEFAULT_SINCE
    last = until or today
    if last < first:
        raise ValueError(f"--until {last} is before --since {first}")
    windows: list[Window] = []
    if since is None:
        windows.append(Window(None, first - timedelta(days=1)))
    start = first
    while start <= last:
        end = min(start + timedelta(days=days - 1), last)
        windows.append(Window(start, end))
        start = end + timedelta(days=1)
    if until is None:
        windows.append(Window(last + timedelta(days=1), None))
    return windows


@dataclass
class PatientGroup:
    """A window's studies of one DICOM patient, and a study-level record for demographics."""

    patient: DicomPatient
    study_uids: list[str] = field(default_factory=list)
    instances: int = 0
    record: Record | None = None

    @property
    def label(self) -> str:
        """How reports name the group: by StudyInstanceUID, never by PatientID (PHI)."""
        more = len(self.study_uids) - 1
        first = self.study_uids[0] if self.study_uids else "?"
        return f"the patient of study {first}" + (f" (+{more} studies)" if more > 0 else "")


def group_by_patient(records: Iterable[Record]) -> tuple[dict[DicomPatient, PatientGroup], int]:
    """Studies grouped by exact PatientID + issuer; also how many records had no PatientID."""
    groups: dict[DicomPatient, PatientGroup] = {}
    without_id = 0
    for record in records:
        patient_id = qido.first_value(record, qido.PATIENT_ID)
        uid = qido.first_value(record, qido.STUDY_INSTANCE_UID)
        if not patient_id or not uid:
            without_id += 1
            continue
        who = DicomPatient(patient_id, qido.first_value(record, qido.ISSUER_OF_PATIENT_ID))
        group = groups.setdefault(who, PatientGroup(who, record=record))
        if uid not in group.study_uids:
            group.study_uids.append(uid)
            group.instances += _int(qido.first_value(record, "00201208"))
    return groups, without_id


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
