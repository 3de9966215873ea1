"""The sync worker: a huey consumer plus lease heartbeats and crash recovery.

``dicom-fhir worker`` runs this in the foreground; ``dicom-fhir serve`` runs that command as
a child process for the embedded default. SIGTERM
stops taking new jobs and waits for the running syncs (up to ``shutdown_timeout``); SIGINT
stops at once. Either way nothing is lost: a job cut short is recovered by ``reconcile``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Sequence

from sidecar.ports import Trigger
from subscription_handlers.adapters.queue import HueySyncQueue
from subscription_handlers.entry.trigger_runner import TriggerRunner

log = logging.getLogger(__name__)


def maintain(queue: HueySyncQueue, stop: threading.Event) -> None:
    """Renew this process's leases every lease/3 s; re-queue lost work every reconcile s."""
    settings = queue.settings
    tick = min(settings.lease_seconds / 3, settings.reconcile_seconds)
    since_reconcile = 0.0
    while not stop.wait(tick):
        try:
            queue.renew_leases()
            since_reconcile += tick
            if since_reconcile >= settings.reconcile_seconds:
                since_reconcile = 0.0
                queue.reconcile()
        except Exception:  # noqa: BLE001 - storage hiccup: try again next tick
            log.exception("queue maintenance failed")


def exit_with_parent(parent_pid: int, every: float = 1.0) -> threading.Thread:
    """Stop this worker (SIGTERM to itself: jobs finish, leases are released) once process
    ``parent_pid`` is gone, e.g. a ``serve`` killed with SIGKILL, which cannot stop its
    embedded worker: an orphan would go on syncing with the old settings."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every)
        log.warning("parent process gone; stopping", extra={"parent_pid": parent_pid})
        os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=watch, name="parent-watch", daemon=True)
    watcher.start()
    return watcher


def run_worker(
    queue: HueySyncQueue,
    *,
    triggers: Sequence[Trigger] = (),
    threads: int | None = None,
    shutdown_timeout: float = 60.0,
) -> None:
    """Consume sync jobs until SIGTERM/SIGINT (must run in the main thread); beside them,
    run each trigger (one runner per trigger across every worker: a lease)."""
    settings = queue.settings
    queue.runner  # noqa: B018 - a queue without a job cannot be a worker: fail at start-up
    requeued = queue.reconcile()
    log.info(
        "sync worker starting",
        extra={
            "backend": settings.backend,
            "threads": threads or settings.worker_threads,
            "requeued": len(requeued),
        },
    )
    stop = threading.Event()
    maintenance = threading.Thread(
        target=maintain, args=(queue, stop), name="sync-maintenance", daemon=True
    )
    maintenance.start()
    for trigger in triggers:  # the root leaves the sync's out when SIDECAR_TRIGGERS=false
        TriggerRunner(trigger, queue, settings.trigger_lease_seconds).start(stop)
    consumer = queue.huey.create_consumer(
        workers=threads or settings.worker_threads,
        worker_type="thread",
        periodic=True,
        initial_delay=0.05,
        backoff=1.3,
        max_delay=settings.poll_max_seconds,
        scheduler_interval=1,
        check_worker_health=True,
        health_check_interval=5,
        graceful_signal="TERM",
        shutdown_timeout=shutdown_timeout,
    )
    try:
        consumer.run()
    finally:
        stop.set()
        log.info("sync worker stopped")
