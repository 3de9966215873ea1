"""The services of one process, as the composition root (:mod:`sidecar.wiring`) builds them.

Everything that serves a caller (the web app, the worker, the CLI commands) receives one
``Services`` and takes what it needs from it; nothing builds its own clients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sidecar.adapters.tokens import TokenValidator
from sidecar.core.audit import Observer
from sidecar.ports import AuditSink, ChangeLog, FhirServer, Pacs, Registration, SyncQueue, Trigger
from sidecar.settings import Settings
from sidecar.usecases.audit_trail import NoAudit, RetrievalAggregator
from sidecar.usecases.backfill import Backfill, BackfillOptions
from sidecar.usecases.fetch_imaging import FetchImaging
from sidecar.usecases.gateway import ImagingGateway
from sidecar.usecases.sync_status import SyncStatus


@dataclass
class Services:
    """Settings, adapters, the use case, the sync queue and the registrar of one process."""

    settings: Settings
    fhir: FhirServer
    pacs: dict[str, Pacs]
    fetch: FetchImaging
    queue: SyncQueue
    registrar: Registration
    #: what the worker runs beside the queue: change feeds, sweeps, catch-up, resync
    triggers: list[Trigger] = field(default_factory=list)
    orthanc: dict[str, ChangeLog] = field(default_factory=dict)
    #: ``backfill(BackfillOptions) -> Backfill``: one run over one PACS, with its checkpoint
    backfill: Callable[[BackfillOptions], Backfill] | None = None
    #: bearer tokens of the authorization server -> Caller (None: SIDECAR_AUTH_* not set)
    tokens: TokenValidator | None = None
    #: the imaging gateway's decisions and answers (None without tokens)
    gateway: ImagingGateway | None = None
    #: the operator's lookup: a Patient or a StudyInstanceUID, PACS and FHIR side by side
    sync_status: SyncStatus | None = None
    #: /healthz's report, probed at most every few seconds (sidecar/usecases/health.py)
    health: Callable[[], dict[str, Any]] = lambda: {"status": "ok"}  # noqa: E731
    #: where AuditEvents go (docs/audit.md): the durable outbox, or NoAudit when it is off
    audit: AuditSink = field(default_factory=NoAudit)
    #: the imaging gateway's retrievals, summarised into AuditEvents (``seen(...)``)
    retrievals: RetrievalAggregator | None = None
    #: this sidecar as the AuditEvents' observer (its public URL, its FHIR server)
    observer: Observer = field(default_factory=Observer)

    def close(self) -> None:
        if self.retrievals is not None:
            self.retrievals.close()  # the last counts into the outbox first
        for feed in self.orthanc.values():
            feed.close()
        self.queue.close()
        self.fetch.close()
        close_audit = getattr(self.audit, "close", None)
        if close_audit is not None:
            close_audit()
