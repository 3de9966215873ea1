"""``dicom-fhir worker | register | jobs``: the sync's commands, added to the main CLI.

    add_parsers(subparsers)   # by the composition root (sidecar/wiring/cli.py)

Each parser sets ``func(args) -> int``.

``jobs`` lists the queue (pending, running, dead letters); ``jobs retry ID... | --all``
puts dead letters back; ``jobs sync ID...`` queues patients by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any


def add_parsers(subparsers: Any) -> None:
    worker = subparsers.add_parser(
        "worker", help="run sync jobs from the queue (Patient notifications)"
    )
    worker.add_argument("--threads", type=int, default=None, help="default SIDECAR_WORKER_THREADS")
    worker.add_argument(
        "--shutdown-timeout", type=float, default=60.0, help="seconds SIGTERM waits for jobs"
    )
    worker.add_argument(  # set by `serve` for its embedded worker
        "--exit-with-parent", type=int, metavar="PID", help="stop when process PID is gone"
    )
    worker.set_defaults(func=cmd_worker)

    register = subparsers.add_parser(
        "register",
        help="create or repair the Patient Subscription and the $fetch-imaging "
        "OperationDefinition on the FHIR server",
    )
    register.add_argument("--no-wait", action="store_true", help="don't wait for 'active'")
    register.add_argument(
        "--check", action="store_true", help="only report the Subscription's status"
    )
    register.set_defaults(func=cmd_register)

    jobs = subparsers.add_parser("jobs", help="the sync queue: pending jobs and dead letters")
    jobs.add_argument("--limit", type=int, default=50)
    jobs.add_argument("--json", action="store_true", help="machine-readable output")
    jobs.set_defaults(func=cmd_jobs)
    actions = jobs.add_subparsers(dest="jobs_action")
    retry = actions.add_parser("retry", help="queue dead letters (or resolved conflicts) again")
    retry.add_argument("patient_ids", nargs="*", metavar="ID", help="Patient ids")
    retry.add_argument("--all", action="store_true", help="every dead letter")
    retry.set_defaults(func=cmd_jobs_retry)
    sync = actions.add_parser("sync", help="queue a sync of these Patients now")
    sync.add_argument("patient_ids", nargs="+", metavar="ID")
    sync.set_defaults(func=cmd_jobs_sync)


def _services(args: argparse.Namespace) -> Any:
    """The process's services, from the composition root's builder (``args.build``)."""
    return args.build()


def cmd_worker(args: argparse.Namespace) -> int:
    from sidecar.entry.logs import configure_logging
    from subscription_handlers.entry.worker import exit_with_parent, run_worker

    services = _services(args)
    configure_logging(services.settings.log_level)
    if args.exit_with_parent:
        exit_with_parent(args.exit_with_parent)
    try:
        run_worker(
            services.queue,
            triggers=services.triggers,
            threads=args.threads,
            shutdown_timeout=args.shutdown_timeout,
        )
    finally:
        services.close()
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from sidecar.core.outcome import FetchError
    from subscription_handlers.usecases.registration import RegistrationError

    registrar = _services(args).registrar
    try:
        if args.check:
            result: dict[str, Any] = {"subscription": registrar.subscription_status()}
        else:
            result = registrar.register_all(wait=not args.no_wait)
    except (RegistrationError, FetchError) as exc:
        print(f"registration failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    status = result["subscription"].get("status")
    return 0 if status == "active" or (args.no_wait and status == "requested") else 2


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_jobs(args: argparse.Namespace) -> int:
    queue = _services(args).queue
    status = queue.status()
    pending = queue.pending(args.limit)
    dead = queue.dead_letters(args.limit)
    conflicts = queue.conflicts(args.limit)
    if args.json:
        print(
            json.dumps(
                {
                    "status": status,
                    "pending": [s.to_dict() for s in pending],
                    "dead": [s.to_dict() for s in dead],
                    "conflicts": [s.to_dict() for s in conflicts],
                    "triggers": queue.trigger_statuses(),
                },
                indent=2,
            )
        )
        return 0
    print(
        f"backend {status['backend']}: {status['pending']} pending ({status['queued']} queued, "
        f"{status['running']} running), {status['dead']} dead letter(s), "
        f"{status['conflict']} identity conflict(s); "
        f"{status['messages']} message(s), {status['scheduled']} scheduled retry(ies)"
    )
    now = time.time()
    triggers = queue.trigger_statuses()
    if triggers:
        print("\nSUBMITTED BY TRIGGER  (the Subscription's deliveries: `notify`)")
        for name, t in triggers.items():
            print(f"  {name}: {t.get('enqueued') or 0}")
    if pending:
        print("\nPENDING  patient  since  attempts  state  trigger  last error")
        for s in pending:
            state = "running" if s.lease_live(now) else "queued" if s.queued else "waiting"
            print(
                f"  Patient/{s.patient_id}  {_when(s.pending_since)}  {s.attempts}  {state}"
                f"  {s.reason or '-'}  {s.last_error or ''}"
            )
    if dead:
        print("\nDEAD LETTERS  patient  failed at  attempts  last error")
        for s in dead:
            print(f"  Patient/{s.patient_id}  {_when(s.dead_at)}  {s.attempts}  {s.last_error}")
        print("\nretry with: dicom-fhir jobs retry ID... | --all")
    if conflicts:
        print("\nCONFLICTS  patient  since  (another Patient claims the same PACS patient)")
        for s in conflicts:
            print(f"  Patient/{s.patient_id}  {_when(s.synced_at)}  {s.detail or ''}")
        print("\nresolve them on the FHIR server; the next change of the Patient syncs it again")
    return 0


def cmd_jobs_retry(args: argparse.Namespace) -> int:
    if not args.all and not args.patient_ids:
        print("give Patient ids or --all", file=sys.stderr)
        return 2
    queue = _services(args).queue
    revived = queue.retry_dead(None if args.all else args.patient_ids)
    print(f"{len(revived)} job(s) queued again" + (f": {', '.join(revived)}" if revived else ""))
    missing = set(args.patient_ids) - set(revived)
    if missing:
        print(f"not dead letters or conflicts: {', '.join(sorted(missing))}", file=sys.stderr)
        return 1
    return 0


def cmd_jobs_sync(args: argparse.Namespace) -> int:
    from sidecar.core.notification_rules import InvalidNotification, validate_patient_id

    queue = _services(args).queue
    for patient_id in args.patient_ids:
        try:
            validate_patient_id(patient_id)
        except InvalidNotification as exc:
            print(str(exc), file=sys.stderr)
            return 2
        print(f"Patient/{patient_id}: {queue.submit(patient_id, None, reason='manual')}")
    return 0
