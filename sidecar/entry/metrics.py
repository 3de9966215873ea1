"""Prometheus metrics of every process, in one ``/metrics``.

Counters and histograms are defined beside the code that records them (fetches in
``sidecar/usecases/fetch_imaging.py``, QIDO requests in ``sidecar/adapters/dicomweb.py``,
sync jobs in ``subscription_handlers/adapters/queue.py``).
``dicom-fhir serve`` runs several processes (gunicorn workers, the embedded sync worker):
:func:`share_between_processes` points prometheus_client's multiprocess mode at one
directory before any of them records anything, and :func:`exposition` then adds up every
process's files. Queue depths are read from the queue's own storage at scrape time, so
they are right whichever process (or machine) changed them.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class QueueStatus(Protocol):
    triggers: Any

    def status(self) -> dict[str, Any]: ...


def share_between_processes(folder: Path) -> Path:
    """Make this process and the ones it starts record into ``folder`` (emptied first).

    Must run before prometheus_client is imported: it chooses how values are stored then.
    An explicit ``PROMETHEUS_MULTIPROC_DIR`` is kept as it is.
    """
    if os.environ.get(MULTIPROC_ENV):
        return Path(os.environ[MULTIPROC_ENV])
    if "prometheus_client" in sys.modules:
        raise RuntimeError("share_between_processes() must run before prometheus_client loads")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def process_exited(pid: int) -> None:
    """Forget a dead process's live gauges (gunicorn's ``child_exit``)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class _QueueCollector:
    def __init__(self, queue: QueueStatus) -> None:
        self.queue = queue

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        try:
            status = self.queue.status()
            triggers = self.queue.trigger_statuses()
        except Exception:  # noqa: BLE001 - a scrape reports what it can
            return
        family = GaugeMetricFamily(
            "sidecar_sync_queue_patients", "Patients in the sync queue by state", labels=["state"]
        )
        for state in ("pending", "queued", "running", "dead", "conflict"):
            family.add_metric([state], float(status.get(state, 0)))
        yield family
        lag = GaugeMetricFamily(
            "sidecar_trigger_lag",
            "How far a trigger is behind (changes for a change log, seconds otherwise)",
            labels=["trigger", "unit"],
        )
        last_ok = GaugeMetricFamily(
            "sidecar_trigger_last_success_timestamp_seconds",
            "When a trigger's last step succeeded",
            labels=["trigger"],
        )
        submitted = CounterMetricFamily(
            "sidecar_trigger_submitted",
            "Syncs a trigger submitted, all processes",
            labels=["trigger"],
        )
        for name, t in triggers.items():
            if t.get("lag") is not None:
                lag.add_metric([name, str(t.get("lag_unit") or "")], float(t["lag"]))
            if t.get("last_ok") is not None:
                last_ok.add_metric([name], float(t["last_ok"]))
            submitted.add_metric([name], float(t.get("enqueued") or 0))
        yield from (lag, last_ok, submitted)


def exposition(queue: QueueStatus | None = None) -> tuple[bytes, str]:
    """The text exposition format of every process's metrics (and the queue's depths)."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    registry: Any = REGISTRY
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    if queue is not None:
        combined = CollectorRegistry(auto_describe=False)
        for collector in (registry, _QueueCollector(queue)):
            combined.register(collector)  # type: ignore[arg-type]
        registry = combined
    return generate_latest(registry), CONTENT_TYPE_LATEST
