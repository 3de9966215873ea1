"""The sync section of ``/healthz``: Subscription status, queue depth, dead letters.

Reported, not fatal: a Subscription that is not active or dead letters make the section
``degraded`` (with the reason), but the sidecar still answers ``$fetch-imaging``, so they do
not turn the whole health check red.
"""

from __future__ import annotations

import threading
from typing import Any

from subscription_handlers.settings import SyncSettings

_registrars: dict[int, Any] = {}
_lock = threading.Lock()


def _registrar(settings: SyncSettings):
    from subscription_handlers.registration import Registrar

    with _lock:
        key = id(settings)
        if key not in _registrars:
            _registrars[key] = Registrar(settings)
        return _registrars[key]


def sync_report(settings: SyncSettings) -> dict[str, Any]:
    """``{"status": ok|degraded|down, "subscription": {...}, "queue": {...}}``."""
    from subscription_handlers.queue import get_queue

    report: dict[str, Any] = {}
    reasons = []
    try:
        subscription = _registrar(settings).subscription_status()
    except Exception as exc:  # noqa: BLE001 - a health probe reports, never raises
        subscription = {"status": "unknown", "reason": type(exc).__name__}
    report["subscription"] = subscription
    if subscription.get("status") != "active" or subscription.get("differs"):
        reasons.append(f"subscription {subscription.get('status')}")
    try:
        queue = get_queue(settings).status()
        report["queue"] = queue
        if queue["dead"]:
            reasons.append(f"{queue['dead']} dead letter(s)")
    except Exception as exc:  # noqa: BLE001
        report["queue"] = {"status": "down", "reason": type(exc).__name__}
        report["status"] = "down"
        report["reason"] = "the sync queue is unavailable"
        return report
    report["status"] = "degraded" if reasons else "ok"
    if reasons:
        report["reason"] = "; ".join(reasons)
    return report


def sync_health() -> dict[str, Any]:
    """For the app's /healthz (reads the settings registered by ``notify.init_app``)."""
    from flask import current_app

    from subscription_handlers.notify import EXTENSION

    return sync_report(current_app.extensions[EXTENSION])
