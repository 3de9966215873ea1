"""``resync``: every Patient re-read in full, once per ``SIDECAR_RESYNC_SECONDS``.

A steady-state fetch skips the series/instance queries of a study whose study-level facts
did not change (sidecar/core/steady_state.py); what changes without touching them (an instance
replaced under the same counts, a corrected SeriesDescription, a study that arrived with an
old date in a PACS without a change feed) is caught here: each Patient with an identifier a
PACS maps is submitted with ``refresh`` (every study read down to its instances). The cursor
is when the last resync started; the first one runs one period after the cursor is made.
"""

from __future__ import annotations

import time

from sidecar.ports import FhirServer, StepReport, SyncQueue, TriggerLease
from sidecar.usecases.fetch_imaging import FetchImaging

CHECK_SECONDS = 60.0


class Resync:
    name = "resync"

    def __init__(
        self, fetch: FetchImaging, fhir: FhirServer, queue: SyncQueue, period: float
    ) -> None:
        self.interval = min(period, CHECK_SECONDS)
        self.period = period
        self.fetch = fetch
        self.fhir = fhir
        self.queue = queue

    def step(self, lease: TriggerLease) -> StepReport:
        cursor = lease.cursor()
        now = time.time()
        if cursor is None:
            lease.move(str(now))
            return StepReport(cursor=str(now), extra={"next_at": now + self.period})
        last = float(cursor)
        if now - last < self.period:
            return StepReport(cursor=cursor, extra={"next_at": last + self.period})
        enqueued = 0
        for patient in self.fhir.iterate("Patient", {"_elements": "identifier,active,link"}):
            if self.fetch.mappable_identifiers(patient):
                self.queue.submit(patient["id"], None, reason=self.name, refresh=True)
                enqueued += 1
        lease.move(str(now))
        return StepReport(enqueued, str(now), extra={"next_at": now + self.period})
