"""``dicom-fhir`` command line: one subcommand per module, registered in :func:`build_parser`.

Each subcommand adds itself with an ``add_<name>_parser(subparsers)`` function that sets
``func(args) -> int`` on its parser. Commands that need the sidecar's services get them from
the composition root (:func:`sidecar.wiring.build`); a bad setting ends any command with
exit code 2 and the variable's name.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sidecar.cli_sync import add_sync_parser
from sidecar.convert import add_convert_parser
from sidecar.settings import SettingsError
from subscription_handlers.cli import add_parsers as add_sync_queue_parsers


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="dicom-fhir", description="DICOM to FHIR R4 tools")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_convert_parser(subparsers)
    add_sync_parser(subparsers)
    add_serve_parser(subparsers)
    add_sync_queue_parsers(subparsers)  # worker, register, jobs
    add_check_parser(subparsers)
    return parser


def add_check_parser(subparsers) -> None:
    check = subparsers.add_parser(
        "check", help="validate the settings; reach the FHIR server, each PACS, the Subscription"
    )
    check.set_defaults(func=_cmd_check)


def _cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 when the settings are valid and every dependency answers; 1 otherwise."""
    from sidecar import wiring
    from sidecar.health import connectivity
    from sidecar.settings import load_settings
    from subscription_handlers.health import trigger_report

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"settings: invalid: {exc}")
        return 1
    print(f"settings: ok (FHIR {settings.fhir.base_url}; PACS: {', '.join(settings.pacs)})")
    services = wiring.build(settings)
    try:
        results = connectivity(services.fhir, services.pacs)
        subscription = services.registrar.subscription_status()
        triggers = trigger_report(services.queue)
    finally:
        services.close()
    ok = subscription.get("status") == "active" and not subscription.get("differs")
    reason = subscription.get("reason") or subscription.get("status")
    if subscription.get("differs") and not subscription.get("reason"):
        reason = f"{reason}, but not the Subscription these settings would register"
    results["subscription"] = {"status": "ok" if ok else "down", "reason": reason}
    for name, result in results.items():
        reason = f"  ({result['reason']})" if result.get("reason") else ""
        print(f"{name}: {result['status']}{reason}")
    for name, t in triggers.items():  # reported, not fatal: a worker may start later
        print(f"trigger {name}: {describe_trigger(t)}")
    return 0 if all(r["status"] == "ok" for r in results.values()) else 1


def describe_trigger(t: dict) -> str:
    """One line: ok or the problem, lag, cursor, last success, syncs submitted."""
    parts = [t.get("problem") or "ok"]
    if t.get("lag") is not None:
        parts.append(f"lag {t['lag']:g} {t.get('lag_unit') or ''}".rstrip())
    if t.get("cursor"):
        parts.append(f"cursor {t['cursor']}")
    if t.get("last_ok"):
        parts.append(f"last ok {_age(float(t['last_ok']))}")
    parts.append(f"{t.get('enqueued') or 0} sync(s) submitted")
    if t.get("holder"):
        parts.append(f"held by {t['holder']}")
    return "; ".join(parts)


def _age(ts: float) -> str:
    import time

    return f"{max(0.0, time.time() - ts):.0f} s ago"


def add_serve_parser(subparsers) -> None:
    serve = subparsers.add_parser(
        "serve", help="run the sidecar (gunicorn) with an embedded sync worker"
    )
    serve.add_argument("--bind", default="127.0.0.1:8090", metavar="HOST:PORT")
    serve.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    serve.add_argument("--threads", type=int, default=8, help="threads per worker")
    serve.add_argument(
        "--no-worker", action="store_true", help="no embedded sync worker (run `worker`)"
    )
    serve.add_argument(
        "--no-register", action="store_true", help="don't register the Subscription on start"
    )
    serve.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from sidecar.server import serve

    serve(
        bind=args.bind,
        workers=args.workers,
        embedded_worker=not args.no_worker,
        threads=args.threads,
        register=False if args.no_register else None,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dicom-fhir`` script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"settings: invalid: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
