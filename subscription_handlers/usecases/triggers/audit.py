"""``audit``: the AuditEvents waiting in the outbox, written to the FHIR server in batches.

Every ``SIDECAR_AUDIT_DRAIN_SECONDS`` (one drainer at a time across replicas: the trigger's
lease) a step reads up to ``SIDECAR_AUDIT_BATCH_SIZE`` of the oldest events and sends them
as ONE ``batch`` Bundle of ``PUT AuditEvent/{id}`` entries (FHIR R4 3.1.0.11: each entry
succeeds or fails on its own, so one bad event never holds up the others; a PUT under the
event's own id makes a resend harmless), then removes what the server took; up to
``BATCHES`` batches a step while more wait. Per entry:

- 2xx: written, removed from the outbox;
- 4xx: refused. Most often a reference whose target the server does not hold (a caller's
  ``fhirUser`` it does not know, a Patient deleted before the event arrived: HAPI enforces
  referential integrity on write), so the event is sent again with its agents' references
  kept as text, then with every reference as text (:func:`sidecar.core.audit.dereferenced`);
  refused still, it is dropped with a log line (its id and the status, no values) and
  counted (``sidecar_audit_dropped_total``);
- 5xx, or no answer for it: kept for the next step.

A server that cannot be reached, or fails the whole Bundle with a 5xx, fails the step (the
trigger runner records it and tries again at the next interval); nothing leaves the outbox.
A Bundle refused whole with a 4xx (an event the server cannot parse) is sent again one
event at a time. The backlog is the step's lag (``sidecar_trigger_lag{trigger="audit"}``).
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter

from sidecar.core.audit import dereferenced
from sidecar.core.outcome import FhirRefused
from sidecar.ports import AuditOutbox, FhirServer, PendingEvent, StepReport, TriggerLease

log = logging.getLogger(__name__)

BATCHES = 10  # batches a step sends at most while more events wait
SENT = Counter("sidecar_audit_sent_total", "AuditEvents written to the FHIR server")
DROPPED = Counter(
    "sidecar_audit_dropped_total", "AuditEvents the FHIR server refused even without references"
)
KEEP = 0  # the status of an entry the server did not answer: sent again next step
#: how a refused event is sent again: as it is, its agents' references as text, all of them
FALLBACKS: tuple[tuple[str, ...], ...] = ((), ("agent",), ("agent", "entity"))


class AuditDrain:
    name = "audit"

    def __init__(
        self, outbox: AuditOutbox, fhir: FhirServer, interval: float = 2.0, batch_size: int = 100
    ) -> None:
        self.outbox = outbox
        self.fhir = fhir
        self.interval = interval
        self.batch_size = batch_size

    def step(self, lease: TriggerLease) -> StepReport:
        sent = dropped = 0
        for _ in range(BATCHES):
            waiting = self.outbox.pending(self.batch_size)
            if not waiting:
                break
            done, refused = self._send(waiting)
            self.outbox.remove([*done, *refused])
            sent += len(done)
            dropped += len(refused)
            if len(done) + len(refused) < len(waiting) or len(waiting) < self.batch_size:
                break  # some must wait for the server, or the outbox is empty
        SENT.inc(sent)
        DROPPED.inc(dropped)
        backlog = self.outbox.count()
        return StepReport(lag=backlog, lag_unit="events", extra={"sent": sent, "dropped": dropped})

    def _send(self, waiting: list[PendingEvent]) -> tuple[list[PendingEvent], list[PendingEvent]]:
        """(written, refused for good) of these events; the rest stay."""
        done: list[PendingEvent] = []
        refused = waiting
        for parts in FALLBACKS:
            events = [dereferenced(p.event, parts) if parts else p.event for p in refused]
            statuses = self._statuses(events)
            done += [p for p, s in zip(refused, statuses, strict=True) if 200 <= s < 300]
            refused = [p for p, s in zip(refused, statuses, strict=True) if 400 <= s < 500]
            if not refused:
                return done, []
        for pending in refused:
            log.warning(
                "audit event refused by the FHIR server, dropped",
                extra={"event_id": pending.event.get("id")},
            )
        return done, refused

    def _statuses(self, events: list[dict[str, Any]]) -> list[int]:
        """The HTTP status of each event's entry; a Bundle refused whole (4xx) is sent again
        one event at a time, so only the bad one is refused."""
        entries = [
            {"resource": e, "request": {"method": "PUT", "url": f"AuditEvent/{e['id']}"}}
            for e in events
        ]
        try:
            answers = self.fhir.batch(entries)
        except FhirRefused as exc:
            if len(events) == 1:
                return [exc.http_status]
            return [s for e in events for s in self._statuses([e])]
        statuses = [_status(a) for a in answers[: len(events)]]
        return statuses + [KEEP] * (len(events) - len(statuses))


def _status(answer: dict[str, Any]) -> int:
    """``response.status`` ("201 Created") as a number; unreadable: kept for next time."""
    text = str((answer.get("response") or {}).get("status") or "").strip()
    head = text.split(" ", 1)[0]
    return int(head) if head.isdigit() else KEEP
