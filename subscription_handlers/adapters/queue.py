"""The durable sync queue: huey (SQLite file or Redis) for messages, a ledger for the truth.

``submit`` is what the notification endpoint calls: one atomic ledger transition (which
also answers the relevance check) and, only when no message or running job covers the
patient yet, one huey message carrying the patient id. Workers run ``execute`` for each
message; see ``state.py`` for why this loses nothing and never runs one patient twice at
once, and docs/sync.md for retries and dead letters.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from huey import RedisHuey, SqliteHuey
from prometheus_client import Counter, Histogram

from sidecar.core import sync_state as sm
from sidecar.core.sync_state import SyncFailed, SyncRunner
from sidecar.settings import SyncSettings
from subscription_handlers.adapters.coordination import (
    RedisTriggerStore,
    SqliteTriggerStore,
    TriggerStore,
)
from subscription_handlers.adapters.ledger import Ledger, RedisLedger, SqliteLedger

log = logging.getLogger(__name__)

TASK_NAME = "sync_patient"
NOTIFICATIONS = Counter(
    "sidecar_sync_notifications_total", "Patient notifications by decision", ["decision"]
)
JOBS = Counter("sidecar_sync_jobs_total", "Sync job runs by result", ["result"])
LATENCY = Histogram(
    "sidecar_sync_latency_seconds",
    "From the first pending notification to the end of the patient's sync",
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)


def source_of(reason: str) -> str:
    """Who asked for a sync, for counts: the trigger's name, or ``notify`` for HAPI's
    deliveries, ``manual``, ``follow-up`` (a merge's survivor)."""
    if reason in ("update", "delete"):
        return "notify"
    return reason.split(" ", 1)[0]


def process_owner() -> str:
    """The lease owner name of this process: ``host:pid:nonce``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str, *, host: str | None = None) -> bool:
    """True when ``owner`` is a process of this host that no longer runs (killed worker).

    Leases of other hosts are only ever freed by their expiry.
    """
    name, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if name != (host or socket.gethostname()) or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed child not yet reaped by its parent still answers kill(0)
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class HueySyncQueue:
    """The queue of one process (build it after fork: the composition root does).

    ``runner`` is the job (``PatientSync``); processes that only submit may leave it out.
    """

    def __init__(
        self,
        settings: SyncSettings,
        *,
        runner: SyncRunner | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.owner = process_owner()
        self._runner = runner
        self._held: dict[str, str] = {}  # patient id -> lease name of the running sync
        self._held_lock = threading.Lock()
        self.huey = _make_huey(settings)
        self.ledger: Ledger = _make_ledger(settings, self.huey)
        self.triggers: TriggerStore = _make_trigger_store(settings, self.huey)
        self._task = self.huey.task(name=TASK_NAME)(self._task_body())

    def _task_body(self) -> Callable[[str], None]:
        queue = self

        def sync_patient(patient_id: str) -> None:
            queue.execute(patient_id)

        sync_patient.__module__ = __name__
        return sync_patient

    # -- producers ---------------------------------------------------------------------------

    def submit(
        self,
        patient_id: str,
        fingerprint: str | None,
        *,
        reason: str = "update",
        refresh: bool = False,
        refresh_studies: Iterable[str] = (),
    ) -> str:
        """Record a trigger's request; enqueue a message when nothing covers the patient yet.

        ``fingerprint`` None always schedules a sync (delete, merge, manual request, a PACS
        change); ``refresh`` asks it to re-read every study in full (the resync),
        ``refresh_studies`` the studies a PACS change log named.
        Returns ``queued``, ``coalesced`` or ``unchanged``.
        """
        now = self.clock()
        decision = self.ledger.update(
            patient_id,
            lambda s: sm.request(
                s,
                patient_id,
                now,
                fingerprint,
                refresh=refresh,
                refresh_studies=refresh_studies,
                reason=reason,
            ),
        )
        if decision == sm.QUEUED:
            self._enqueue(patient_id)
            self.triggers.update_status(source_of(reason), {}, enqueued=1)
        NOTIFICATIONS.labels(decision).inc()
        log.info(
            "notification", extra={"patient_id": patient_id, "decision": decision, "reason": reason}
        )
        return decision

    def _enqueue(self, patient_id: str, delay: float | None = None) -> None:
        if delay:
            self._task.schedule(args=(patient_id,), delay=delay)
        else:
            self._task(patient_id)

    # -- the worker side -----------------------------------------------------------------

    @property
    def runner(self) -> SyncRunner:
        if self._runner is None:
            raise RuntimeError("this queue was built without a runner; it cannot run jobs")
        return self._runner

    def execute(self, patient_id: str) -> str:
        """Run one message: claim the patient, sync it, record the result. Returns a label."""
        settings = self.settings
        token = f"{self.owner}.{uuid.uuid4().hex[:6]}"  # this run's lease name
        claim = self.ledger.update(
            patient_id,
            lambda s: sm.begin(s, token, self.clock(), settings.lease_seconds),
        )
        if claim is None:
            JOBS.labels("skipped").inc()
            return "skipped"
        with self._held_lock:
            self._held[patient_id] = token
        log.info("sync start", extra={"patient_id": patient_id, "lease": token})
        try:
            try:
                studies = frozenset(claim.refresh_studies)
                outcome = self.runner(patient_id, claim.refresh, studies)
            except SyncFailed as exc:
                return self._failed(patient_id, token, str(exc), retriable=exc.retriable)
            except Exception as exc:  # noqa: BLE001 - unknown errors are retried, then dead
                log.exception("sync raised", extra={"patient_id": patient_id})
                error = f"{type(exc).__name__}: {exc}"
                return self._failed(patient_id, token, error, retriable=True)
            now = self.clock()
            state_before = self.ledger.get(patient_id)
            requeue = self.ledger.update(
                patient_id,
                lambda s: sm.succeed(
                    s, token, now, outcome.fingerprint, outcome.status, outcome.detail
                ),
            )
        finally:
            with self._held_lock:
                self._held.pop(patient_id, None)
        if state_before is not None and state_before.pending_since is not None:
            LATENCY.observe(max(now - state_before.pending_since, 0.0))
        if requeue:
            self._enqueue(patient_id)
        for other in outcome.follow_up:
            self.submit(other, None, reason=f"follow-up of Patient/{patient_id}")
        JOBS.labels(outcome.status).inc()
        log.info(
            "sync done",
            extra={
                "patient_id": patient_id,
                "status": outcome.status,
                "studies": outcome.studies,
                "attempt": claim.attempt,
                "lease": token,
            },
        )
        return outcome.status

    def _failed(self, patient_id: str, token: str, error: str, *, retriable: bool) -> str:
        settings = self.settings
        delay = self.ledger.update(
            patient_id,
            partial(
                sm.fail,
                owner=token,
                now=self.clock(),
                error=error,
                retriable=retriable,
                max_attempts=settings.max_attempts,
                delay_for=settings.retry_delay,
            ),
        )
        if delay is not None:
            self._enqueue(patient_id, delay=delay)
            JOBS.labels("retry").inc()
            log.warning(
                "sync failed, retrying",
                extra={"patient_id": patient_id, "error": error, "delay": delay, "lease": token},
            )
            return "retry"
        JOBS.labels("dead").inc()
        log.error(
            "sync failed, dead letter",
            extra={"patient_id": patient_id, "error": error, "lease": token},
        )
        return "dead"

    def renew_leases(self) -> int:
        """Extend the leases of the syncs this process is running (heartbeat)."""
        with self._held_lock:
            held = list(self._held.items())
        renewed = 0
        for patient_id, token in held:
            now = self.clock()
            if self.ledger.update(
                patient_id,
                lambda s, n=now, t=token: sm.renew(s, t, n, self.settings.lease_seconds),
            ):
                renewed += 1
        return renewed

    def reconcile(self) -> list[str]:
        """Queue again owed work that no message or live worker covers (after a crash)."""
        requeued = []
        pending = self.ledger.ids("pending")
        if not pending:
            return requeued
        with_message = self._patients_with_messages()
        for patient_id in pending:
            now = self.clock()
            has_message = None if with_message is None else patient_id in with_message
            if self.ledger.update(
                patient_id,
                lambda s, n=now, m=has_message: sm.reconcile(
                    s, n, self.settings.stale_queued_seconds, owner_is_dead, m
                ),
            ):
                self._enqueue(patient_id)
                requeued.append(patient_id)
        if requeued:
            log.warning("re-queued lost or stale sync jobs", extra={"count": len(requeued)})
        return requeued

    def _patients_with_messages(self) -> set[str] | None:
        """Patients with a queued or scheduled message (None when the queue can't be read)."""
        try:
            tasks = list(self.huey.pending()) + list(self.huey.scheduled())
        except Exception:  # noqa: BLE001 - fall back to the stale-flag rule
            log.exception("could not list queued messages")
            return None
        return {str(t.args[0]) for t in tasks if t.args}

    # -- operators -------------------------------------------------------------------------

    def retry_dead(self, patient_ids: list[str] | None = None) -> list[str]:
        """Put dead letters back in the queue (all of them when ``patient_ids`` is None)."""
        targets = (
            self.ledger.ids("dead") + self.ledger.ids("conflict")
            if patient_ids is None
            else patient_ids
        )
        revived = []
        for patient_id in targets:
            now = self.clock()
            if self.ledger.update(patient_id, lambda s, n=now: sm.revive(s, n)):
                self._enqueue(patient_id)
                revived.append(patient_id)
        return revived

    def state(self, patient_id: str) -> sm.PatientSyncState | None:
        """One Patient's ledger record, for the operator page's lookup."""
        return self.ledger.get(patient_id)

    def dead_letters(self, limit: int = 100) -> list[sm.PatientSyncState]:
        states = (self.ledger.get(pid) for pid in self.ledger.ids("dead", limit))
        return [s for s in states if s is not None]

    def conflicts(self, limit: int = 100) -> list[sm.PatientSyncState]:
        """Patients whose last sync was refused: another Patient claims the same patient."""
        states = (self.ledger.get(pid) for pid in self.ledger.ids("conflict", limit))
        return [s for s in states if s is not None]

    def pending(self, limit: int = 100) -> list[sm.PatientSyncState]:
        states = (self.ledger.get(pid) for pid in self.ledger.ids("pending", limit))
        return [s for s in states if s is not None]

    def status(self) -> dict[str, Any]:
        """Counts for /healthz and ``dicom-fhir jobs``."""
        return {
            "backend": self.settings.backend,
            "pending": self.ledger.count("pending"),
            "queued": self.ledger.count("queued"),
            "running": self.ledger.count("leased"),
            "dead": self.ledger.count("dead"),
            "conflict": self.ledger.count("conflict"),
            "messages": self.huey.pending_count(),
            "scheduled": self.huey.scheduled_count(),
        }

    def trigger_statuses(self) -> dict[str, dict[str, Any]]:
        """Each trigger's recorded status (lease holder, cursor, lag, last success, error)."""
        return self.triggers.statuses()

    def drained(self) -> bool:
        return self.ledger.count("pending") == 0 and self.ledger.count("leased") == 0

    def close(self) -> None:
        self.triggers.close()
        self.ledger.close()
        self.huey.storage.close()


def _make_huey(settings: SyncSettings) -> Any:
    if settings.redis_url:
        url = settings.redis_url.get_secret_value()
        return RedisHuey(settings.queue_name, url=url, results=False, blocking=True)
    assert settings.queue_path is not None  # Settings fills it in from SIDECAR_DATA_DIR
    settings.queue_path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(
        settings.queue_name,
        filename=str(settings.queue_path),
        results=False,
        fsync=True,
        timeout=30,
        strict_fifo=True,
    )


def _make_trigger_store(settings: SyncSettings, huey: Any) -> TriggerStore:
    if settings.redis_url:
        return RedisTriggerStore(huey.storage.conn, prefix=f"dicom-fhir.sync.{settings.queue_name}")
    assert settings.queue_path is not None
    return SqliteTriggerStore(settings.queue_path)


def _make_ledger(settings: SyncSettings, huey: Any) -> Ledger:
    if settings.redis_url:
        return RedisLedger(huey.storage.conn, prefix=f"dicom-fhir.sync.{settings.queue_name}")
    assert settings.queue_path is not None
    return SqliteLedger(settings.queue_path)
