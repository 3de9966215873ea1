"""The sync section of ``/healthz``: Subscription status, queue depth, dead letters.

Reported, not fatal: a Subscription that is not active or dead letters make the section
``degraded`` (with the reason), but the sidecar still answers ``$fetch-imaging``, so they do
not turn the whole health check red.
"""

from __future__ import annotations

import time
from typing import Any

from subscription_handlers.queue import SyncQueue
from subscription_handlers.registration import Registrar


def trigger_report(queue: SyncQueue, now: float | None = None) -> dict[str, dict[str, Any]]:
    """Each trigger's status (subscription_handlers.coordination), with a ``problem`` when its
    last step failed or it has not succeeded for three of its intervals."""
    now = time.time() if now is None else now
    out = {}
    for name, status in queue.triggers.statuses().items():
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


def sync_report(registrar: Registrar, queue: SyncQueue) -> dict[str, Any]:
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
