"""The sync section of ``/healthz``: Subscription status, queue depth, dead letters.

Reported, not fatal: a Subscription that is not active or dead letters make the section
``degraded`` (with the reason), but the sidecar still answers ``$fetch-imaging``, so they do
not turn the whole health check red.
"""

from __future__ import annotations

from typing import Any

from subscription_handlers.queue import SyncQueue
from subscription_handlers.registration import Registrar


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
    report["status"] = "degraded" if reasons else "ok"
    if reasons:
        report["reason"] = "; ".join(reasons)
    return report
