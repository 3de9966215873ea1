"""Reachability of what the use case needs (the FHIR server and every PACS), probed in
parallel; shared by ``/healthz`` and ``dicom-fhir check``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sidecar.core.outcome import FetchError
from sidecar.ports import FhirServer, Pacs, Registration, SyncQueue


def probe(check: Callable[[], object]) -> dict[str, Any]:
    """``{"status": "ok"|"down", "reason"?, "seconds"}`` for one check; never raises."""
    started = time.perf_counter()
    try:
        check()
        status: dict[str, Any] = {"status": "ok"}
    except FetchError as exc:
        status = {"status": "down", "reason": exc.diagnostics}
    except Exception as exc:  # noqa: BLE001 - a health probe reports, never raises
        status = {"status": "down", "reason": type(exc).__name__}
    status["seconds"] = round(time.perf_counter() - started, 3)
    return status


def connectivity(fhir: FhirServer, pacs: Mapping[str, Pacs]) -> dict[str, dict[str, Any]]:
    """One probe per dependency: ``fhir`` and ``pacs:<name>``."""
    checks: dict[str, Callable[[], object]] = {"fhir": fhir.ping}
    checks.update({f"pacs:{name}": client.ping for name, client in pacs.items()})
    with ThreadPoolExecutor(len(checks)) as pool:
        return dict(zip(checks, pool.map(probe, checks.values()), strict=True))


def trigger_report(queue: SyncQueue, now: float | None = None) -> dict[str, dict[str, Any]]:
    """Each trigger's recorded status, with a ``problem`` when its
    last step failed or it has not succeeded for three of its intervals."""
    now = time.time() if now is None else now
    out = {}
    for name, status in queue.trigger_statuses().items():
        entry = dict(status)
        if "interval" not in entry:  # a source without steps (notify, manual): counts only
            out[name] = entry
            continue
        interval = float(entry["interval"])
        last_ok = entry.get("last_ok")
        if entry.get("error"):
            entry["problem"] = f"last step failed: {entry['error']}"
        elif last_ok is None or now - float(last_ok) > 3 * interval + 30:
            entry["problem"] = (
                "no successful step for three intervals (no worker runs it, or a step hangs)"
            )
        out[name] = entry
    return out


def sync_report(registrar: Registration, queue: SyncQueue) -> dict[str, Any]:
    """``{"status": ok|degraded|down, "subscription": {...}, "queue": {...}}``."""
    report: dict[str, Any] = {}
    reasons = []
    subscription = registrar.subscription_status()
    report["subscription"] = subscription
    if subscription.get("status") != "active" or subscription.get("differs"):
        reasons.append(f"subscription {subscription.get('status')}")
    try:
        status = queue.status()
    except Exception as exc:  # noqa: BLE001 - a health probe reports, never raises
        report["queue"] = {"status": "down", "reason": type(exc).__name__}
        report["status"] = "down"
        report["reason"] = "the sync queue is unavailable"
        return report
    report["queue"] = status
    if status["dead"]:
        reasons.append(f"{status['dead']} dead letter(s)")
    report["triggers"] = triggers = trigger_report(queue)
    reasons += [f"{name}: {t['problem']}" for name, t in triggers.items() if t.get("problem")]
    report["status"] = "degraded" if reasons else "ok"
    if reasons:
        report["reason"] = "; ".join(reasons)
    return report


class HealthReport:
    """``/healthz``'s answer, computed at most once per ``ttl`` seconds per process: a probe
    costs a FHIR request, a Subscription read and a QIDO per PACS, and the endpoint needs
    no credentials, so callers share one probe (the others wait for it, then read it)."""

    def __init__(
        self,
        fhir: FhirServer,
        pacs: Mapping[str, Pacs],
        registrar: Registration,
        queue: SyncQueue,
        *,
        ttl: float = 5.0,
    ) -> None:
        self._probe = lambda: _report(fhir, pacs, registrar, queue)
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None
        self.probes = 0  # how many probes ran (tests, /metrics)

    def __call__(self) -> dict[str, Any]:
        with self._lock:  # one probe at a time; waiting callers get its answer
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self._ttl:
                self.probes += 1
                self._cached = (time.monotonic(), self._probe())
            return self._cached[1]


def _report(
    fhir: FhirServer, pacs: Mapping[str, Pacs], registrar: Registration, queue: SyncQueue
) -> dict[str, Any]:
    """``{"status": ok|degraded|down, "checks": {...}, "sync": {...}}``."""
    results = connectivity(fhir, pacs)
    healthy = all(r["status"] == "ok" for r in results.values())
    sync = sync_report(registrar, queue)
    status = "down" if not healthy else "ok" if sync.get("status") == "ok" else "degraded"
    return {"status": status, "checks": results, "sync": sync}
