"""``changes:<pacs>``: new and grown studies from a PACS's own change log (Orthanc's today),
within seconds.

The cursor is the last change sequence whose studies were submitted; a step reads up to
``BATCHES`` x ``BATCH`` changes after it, resolves each study change to its
StudyInstanceUID, asks the PACS for that study's PatientID and IssuerOfPatientID, submits a
sync for every FHIR Patient that is that patient (which re-reads that study down to its
instances, whatever its counts say), and only then moves the cursor. The first
step of a new cursor starts at the newest change (what was stored before is the backfill's).
Deletions leave no trace in Orthanc's log: the sweep finds them.
"""

from __future__ import annotations

from sidecar.ports import ChangeLog, FhirServer, Pacs, StepReport, SyncQueue, TriggerLease
from sidecar.settings import PacsSettings
from sidecar.usecases.patients import patients_of

BATCH = 100
BATCHES = 20


class ChangeLogFeed:
    def __init__(
        self,
        pacs: PacsSettings,
        interval: float,
        changes: ChangeLog,
        client: Pacs,
        fhir: FhirServer,
        queue: SyncQueue,
    ) -> None:
        self.name = f"changes:{pacs.name}"
        self.interval = interval
        self.pacs = pacs
        self.changes = changes
        self.client = client
        self.fhir = fhir
        self.queue = queue

    def step(self, lease: TriggerLease) -> StepReport:
        cursor = lease.cursor()
        if cursor is None:
            head = self.changes.last()
            lease.move(str(head))
            return StepReport(cursor=str(head), lag=0, lag_unit="changes")
        seq, enqueued = int(cursor), 0
        for _ in range(BATCHES):
            changes, last, done = self.changes.since(seq, BATCH)
            resources = dict.fromkeys(
                (c.resource_type, c.resource_id)
                for c in changes
                if c.change_type in self.changes.study_change_types
            )
            uids = [
                uid
                for change in (c for c in changes if (c.resource_type, c.resource_id) in resources)
                if (uid := self._uid_once(change, resources)) is not None
            ]
            for uid, records in self.client.find_studies(uids).items():
                for record in records:
                    for patient_id in patients_of(self.fhir, self.pacs, record):
                        # the study is re-read in full: a change under equal counts shows
                        self.queue.submit(
                            patient_id, None, reason=self.name, refresh_studies=(uid,)
                        )
                        enqueued += 1
            lease.move(str(last))  # after everything it covers is queued
            seq = last
            if done:
                break
        # a deletion removes its study's entries, so the newest may be older than the cursor
        lag = max(0, self.changes.last() - seq)
        return StepReport(enqueued, str(seq), lag=lag, lag_unit="changes")

    def _uid_once(self, change, pending: dict) -> str | None:
        key = (change.resource_type, change.resource_id)
        if key not in pending:
            return None
        del pending[key]
        return self.changes.study_uid(change)
