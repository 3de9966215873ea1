"""``catch-up``: Patients changed on the FHIR server that no delivery announced.

HAPI retries a REST-hook delivery for about a minute and then drops it (measured: with the
sidecar down for 120 s during a burst of 50 new Patients, 2 were never delivered). At
start and every ``SIDECAR_CATCH_UP_SECONDS`` this searches
``Patient?_lastUpdated=ge<cursor>`` (paged, no cache) and submits each Patient with its
relevance fingerprint, so an unchanged one costs one look-up in the queue's storage. The
cursor is the newest ``meta.lastUpdated`` seen, moved only after every Patient up to it
was submitted; the search starts 2 s before it (equal timestamps, clock steps).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sidecar.core.sync_state import QUEUED
from sidecar.ports import FhirServer, StepReport, SyncQueue, TriggerLease
from sidecar.usecases.fetch_imaging import FetchImaging
from subscription_handlers.usecases.patient_sync import fingerprint_for


class CatchUp:
    name = "catch-up"

    def __init__(
        self,
        fetch: FetchImaging,
        fhir: FhirServer,
        queue: SyncQueue,
        interval: float,
        lookback_seconds: float,
        overlap_seconds: float = 300.0,
    ) -> None:
        self.interval = interval
        self.fetch = fetch
        self.fhir = fhir
        self.queue = queue
        self.lookback = timedelta(seconds=lookback_seconds)
        self.overlap = timedelta(seconds=overlap_seconds)

    def step(self, lease: TriggerLease) -> StepReport:
        cursor = lease.cursor()
        newest = datetime.fromisoformat(cursor) if cursor else datetime.now(UTC) - self.lookback
        since = (newest - self.overlap).isoformat(timespec="milliseconds")
        enqueued = seen = 0
        for patient in self.fhir.iterate(
            "Patient",
            {
                "_lastUpdated": f"ge{since}",
                "_sort": "_lastUpdated",
                "_elements": "identifier,active,link",
            },
        ):
            seen += 1
            decision = self.queue.submit(
                patient["id"], fingerprint_for(self.fetch, patient), reason=self.name
            )
            enqueued += decision == QUEUED
            updated = (patient.get("meta") or {}).get("lastUpdated")
            if updated:
                newest = max(newest, datetime.fromisoformat(updated))
        lease.move(newest.isoformat(timespec="milliseconds"))
        return StepReport(enqueued, newest.isoformat(), 0.0, "seconds", {"seen": seen})
