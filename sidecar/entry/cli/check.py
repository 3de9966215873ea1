"""``dicom-fhir check``: are the settings valid, and do the FHIR server, each PACS and the
Subscription answer? Exit 0 when all do, 1 when one does not, 2 for a bad setting (the
composition root's ``main`` reports it, naming the variable)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from sidecar.usecases.health import connectivity, trigger_report


def add_check_parser(subparsers: Any) -> None:
    check = subparsers.add_parser(
        "check", help="validate the settings; reach the FHIR server, each PACS, the Subscription"
    )
    check.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 when every dependency answers; 1 otherwise."""
    services = args.build()
    settings = services.settings
    print(f"settings: ok (FHIR {settings.fhir.base_url}; PACS: {', '.join(settings.pacs)})")
    try:
        results = connectivity(services.fhir, services.pacs)
        subscription = services.registrar.subscription_status()
        mismatch = ""
        if subscription.get("differs") and not subscription.get("reason"):
            mismatch = services.registrar.mismatch()
        triggers = trigger_report(services.queue)
    finally:
        services.close()
    ok = subscription.get("status") == "active" and not subscription.get("differs")
    reason = subscription.get("reason") or subscription.get("status")
    if mismatch:
        reason = f"{reason}, but {mismatch}"
    elif reason == "missing":
        reason = "missing: dicom-fhir serve registers it at start, dicom-fhir register now"
    results["subscription"] = {"status": "ok" if ok else "down", "reason": reason}
    for name, result in results.items():
        reason = f"  ({result['reason']})" if result.get("reason") else ""
        print(f"{name}: {result['status']}{reason}")
    for name, t in triggers.items():  # reported, not fatal: a worker may start later
        print(f"trigger {name}: {describe_trigger(t)}")
    return 0 if all(r["status"] == "ok" for r in results.values()) else 1


def describe_trigger(t: dict[str, Any]) -> str:
    """One line: ok or the problem, lag, cursor, last success, syncs submitted."""
    parts = [t.get("problem") or "ok"]
    if t.get("lag") is not None:
        parts.append(f"lag {t['lag']:g} {t.get('lag_unit') or ''}".rstrip())
    if t.get("cursor"):
        parts.append(f"cursor {t['cursor']}")
    if t.get("last_ok"):
        parts.append(f"last ok {max(0.0, time.time() - float(t['last_ok'])):.0f} s ago")
    parts.append(f"{t.get('enqueued') or 0} sync(s) submitted")
    if t.get("holder"):
        parts.append(f"held by {t['holder']}")
    return "; ".join(parts)
