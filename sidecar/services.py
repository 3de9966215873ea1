"""The services of one process, as the composition root (:mod:`sidecar.wiring`) builds them.

Everything that serves a caller (the web app, the worker, the CLI commands) receives one
``Services`` and takes what it needs from it; nothing builds its own clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sidecar.fetch_imaging import FetchImaging
from sidecar.fhir_store import FhirStore
from sidecar.orthanc import OrthancChanges
from sidecar.pacs import PacsClient
from sidecar.settings import Settings
from subscription_handlers.queue import SyncQueue
from subscription_handlers.registration import Registrar
from subscription_handlers.triggers.base import Trigger


@dataclass
class Services:
    """Settings, adapters, the use case, the sync queue and the registrar of one process."""

    settings: Settings
    fhir: FhirStore
    pacs: dict[str, PacsClient]
    fetch: FetchImaging
    queue: SyncQueue
    registrar: Registrar
    #: what the worker runs beside the queue: change feeds, sweeps, catch-up, resync
    triggers: list[Trigger] = field(default_factory=list)
    orthanc: dict[str, OrthancChanges] = field(default_factory=dict)

    def close(self) -> None:
        for feed in self.orthanc.values():
            feed.close()
        self.queue.close()
        self.fetch.close()
