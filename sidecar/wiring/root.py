"""The composition root: the one place that reads the settings and builds the objects.

    settings -> FHIR store, one PACS client per PACS, the audit outbox
             -> the use case (FetchImaging) -> the sync job (PatientSync)
             -> the queue (HueySyncQueue) -> the registrar, the triggers (the audit drain)

``build()`` returns them as :class:`~sidecar.services.Services`; the web app
(:func:`create_web_app`), the worker and every CLI command start from it. Nothing else
reads the environment or keeps a module-level client. Build after fork: each gunicorn
worker and each worker process builds its own (connections and SQLite handles are not
shared across processes).
"""

from __future__ import annotations

import atexit
from functools import partial
from pathlib import Path

from flask import Flask
from requests.auth import AuthBase

from sidecar.adapters.checkpoint import Checkpoint
from sidecar.adapters.dicomweb import DicomwebPacs
from sidecar.adapters.fhir_store import FhirStore
from sidecar.adapters.http import requests_auth
from sidecar.adapters.orthanc import OrthancChanges
from sidecar.adapters.tokens import TokenValidator
from sidecar.entry.logs import configure_logging
from sidecar.entry.web.app import create_app
from sidecar.ports import AuditOutbox, Trigger
from sidecar.services import Services
from sidecar.settings import OrthancChangeLog, QidoPoll, Settings, load_settings
from sidecar.usecases.audit_trail import NoAudit, RetrievalAggregator, observer_of
from sidecar.usecases.backfill import Backfill, BackfillOptions
from sidecar.usecases.fetch_imaging import FetchImaging
from sidecar.usecases.gateway import ImagingGateway
from sidecar.usecases.health import HealthReport
from sidecar.usecases.sync_status import SyncStatus
from subscription_handlers.adapters.audit_outbox import open_outbox
from subscription_handlers.adapters.queue import HueySyncQueue
from subscription_handlers.entry import notify
from subscription_handlers.usecases.patient_sync import PatientSync
from subscription_handlers.usecases.registration import Registrar
from subscription_handlers.usecases.triggers.audit import AuditDrain
from subscription_handlers.usecases.triggers.catch_up import CatchUp
from subscription_handlers.usecases.triggers.changes import ChangeLogFeed
from subscription_handlers.usecases.triggers.recent import RecentStudies
from subscription_handlers.usecases.triggers.resync import Resync
from subscription_handlers.usecases.triggers.sweep import StoredStudySweep


def build(settings: Settings | None = None) -> Services:
    """Every service of one process, on ``settings`` (default: read them now)."""
    settings = settings or load_settings()
    fhir = FhirStore(settings.fhir)
    pacs = {name: DicomwebPacs(p, settings.qido) for name, p in settings.pacs.items()}
    outbox = open_outbox(settings.sync) if settings.audit.enabled else None
    fetch = FetchImaging(settings, fhir, pacs, audit=outbox)
    queue = HueySyncQueue(settings.sync, runner=PatientSync(fetch))
    orthanc = {
        name: OrthancChanges(p, p.changes, settings.qido)
        for name, p in settings.pacs.items()
        if isinstance(p.changes, OrthancChangeLog)
    }
    triggers = build_triggers(settings, fhir, pacs, orthanc, fetch, queue, outbox)
    tokens = TokenValidator(settings.auth) if settings.auth.issuer else None
    gateway = (
        ImagingGateway(
            settings.pacs,
            pacs,
            fhir,
            ttl=settings.gateway.decision_seconds,
            size=settings.gateway.cache_entries,
        )
        if tokens is not None
        else None
    )
    registrar = build_registrar(settings, fhir)
    sink = outbox if outbox is not None else NoAudit()
    observer = observer_of(settings)
    retrievals = RetrievalAggregator(
        sink,
        settings.audit.window_seconds,
        settings.audit.flush_seconds,
        observer=observer,
    )
    return Services(
        settings,
        fhir,
        pacs,
        fetch,
        queue,
        registrar,
        triggers,
        orthanc,
        backfill=partial(backfill, fetch, settings.data_dir),
        health=HealthReport(fhir, pacs, registrar, queue),
        audit=sink,
        retrievals=retrievals,
        observer=observer,
        tokens=tokens,
        gateway=gateway,
        sync_status=SyncStatus(settings, fhir, pacs, queue),
    )


def backfill(fetch: FetchImaging, data_dir: Path, options: BackfillOptions) -> Backfill:
    """One backfill run with its checkpoint file under ``SIDECAR_DATA_DIR``."""
    params = options.checkpoint_params()
    path = Checkpoint.path_for(data_dir, options.pacs, params)
    checkpoint = Checkpoint.load(path, params, restart=options.restart)
    return Backfill(fetch, options, checkpoint=checkpoint)


def build_triggers(
    settings: Settings,
    fhir: FhirStore,
    pacs: dict[str, DicomwebPacs],
    orthanc: dict[str, OrthancChanges],
    fetch: FetchImaging,
    queue: HueySyncQueue,
    outbox: AuditOutbox | None = None,
) -> list[Trigger]:
    """What the worker runs beside the queue: the audit drain (whenever the audit is on),
    and what makes FHIR follow the PACS (``subscription_handlers/usecases/triggers``)
    unless ``SIDECAR_TRIGGERS=false``."""
    sync = settings.sync
    triggers: list[Trigger] = []
    if outbox is not None:
        audit = settings.audit
        triggers.append(AuditDrain(outbox, fhir, audit.drain_seconds, audit.batch_size))
    if not sync.triggers:
        return triggers
    for name, p in settings.pacs.items():
        match p.changes:  # the PACS's new-study feed, by its settings' type
            case OrthancChangeLog(poll_seconds=every):
                triggers.append(ChangeLogFeed(p, every, orthanc[name], pacs[name], fhir, queue))
            case QidoPoll() as poll:
                triggers.append(RecentStudies(p, poll, pacs[name], fhir, queue))
        triggers.append(StoredStudySweep(p, pacs[name], fhir, queue, sync.sweep_seconds))
    triggers.append(
        CatchUp(
            fetch,
            fhir,
            queue,
            sync.catch_up_seconds,
            sync.catch_up_lookback_seconds,
            sync.catch_up_overlap_seconds,
        )
    )
    triggers.append(Resync(fetch, fhir, queue, sync.resync_seconds))
    return triggers


def build_registrar(settings: Settings, fhir: FhirStore | None = None) -> Registrar:
    """The Subscription/OperationDefinition registrar (the first notify secret is current)."""
    notify_secret = settings.notify_secret[0].get_secret_value() if settings.notify_secret else None
    return Registrar(settings.sync, fhir or FhirStore(settings.fhir), notify_secret)


def fhir_auth(settings: Settings | None = None) -> AuthBase | None:
    """The sidecar's credentials to its FHIR server as a requests auth (None: anonymous), for
    tools that act as the sidecar's own client: the compose seeder writes the demo Patient
    with them (client credentials: a system token, renewed before it expires)."""
    fhir = (settings or load_settings()).fhir
    return requests_auth(fhir.auth, timeout=fhir.timeout_seconds)


def require_caller_credentials(settings: Settings) -> None:
    """The web app refuses to start without a way to authenticate its callers."""
    if not (settings.relay_secret or settings.bearer_tokens or settings.allow_anonymous):
        raise RuntimeError(
            "no caller credential configured: set SIDECAR_RELAY_SECRET and/or "
            "SIDECAR_BEARER_TOKENS (or SIDECAR_ALLOW_ANONYMOUS=true for a closed network)"
        )


def create_web_app(settings: Settings | None = None) -> Flask:
    """The WSGI app for gunicorn: ``'sidecar.wiring:create_web_app()'``."""
    settings = settings or load_settings()
    require_caller_credentials(settings)
    configure_logging(settings.log_level)
    services = build(settings)
    # a gunicorn worker leaves through sys.exit: the gateway's last retrieval counts reach
    # the audit outbox, pooled connections close
    atexit.register(services.close)
    return web_app(services)


def web_app(services: Services) -> Flask:
    """The Flask app on these services, with every blueprint (the sync's ``/notify`` too)."""
    return create_app(services, blueprints=[notify.bp])
