"""``recent:<pacs>``: new and grown studies of any DICOMweb PACS, by polling QIDO-RS.

DICOMweb has no change feed. Every ``poll_seconds`` this reads the studies whose StudyDate
(0008,0020) falls in the last ``recent_days`` days (and later), and submits a sync for the
Patients of each study that is new or whose series/instance counts changed since the last
poll. Studies that arrive with older dates are found by the resync; a restarted worker
submits every study of the window once (each a cheap steady-state sync).
"""

from __future__ import annotations

import time
from datetime import date, timedelta

from sidecar.core import qido
from sidecar.ports import FhirServer, Pacs, StepReport, SyncQueue, TriggerLease
from sidecar.settings import PacsSettings, QidoPoll
from sidecar.usecases.patients import patients_of

FIELDS = (qido.ISSUER_OF_PATIENT_ID, "00201206", "00201208", qido.MODALITIES_IN_STUDY)


class RecentStudies:
    def __init__(
        self, pacs: PacsSettings, poll: QidoPoll, client: Pacs, fhir: FhirServer, queue: SyncQueue
    ) -> None:
        self.name = f"recent:{pacs.name}"
        self.interval = poll.poll_seconds
        self.days = poll.recent_days
        self.pacs = pacs
        self.client = client
        self.fhir = fhir
        self.queue = queue
        self.seen: dict[str, tuple[object, ...]] = {}

    def step(self, lease: TriggerLease) -> StepReport:
        since = date.today() - timedelta(days=self.days - 1)
        filters = [(qido.STUDY_DATE, qido.dicom_date_range(since, None) or "")]
        now: dict[str, tuple[object, ...]] = {}
        news = []
        for page in self.client.study_pages(filters, fields=FIELDS):
            for row in page:
                uid = qido.first_value(row, qido.STUDY_INSTANCE_UID)
                if not uid or not qido.is_uid(uid):
                    continue
                facts = tuple(qido.all_values(row, tag) for tag in (qido.PATIENT_ID, *FIELDS))
                now[uid] = facts
                if self.seen.get(uid) != facts:
                    news.append(row)
        enqueued = 0
        for row in news:
            for patient_id in patients_of(self.fhir, self.pacs, row):
                self.queue.submit(patient_id, None, reason=self.name)
                enqueued += 1
        self.seen = now
        return StepReport(enqueued, str(time.time()), extra={"window_studies": len(now)})
