"""``dicom-fhir sync``: one patient now, or the whole PACS (backfill), through the use case.

    dicom-fhir sync PATIENT_ID                  # a Patient id on the FHIR server
    dicom-fhir sync --identifier SYSTEM|VALUE   # a Patient found by identifier
    dicom-fhir sync --all [--since DATE] [--until DATE] [--pacs NAME] [--create-patients]
                          [--window-days N] [--workers N] [--restart]

Settings come from the ``SIDECAR_*`` environment (``deploy/local/stack.sh env`` prints them)
through the composition root; the backfill's checkpoint lives under ``SIDECAR_DATA_DIR``
(default ``var/sidecar``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from datetime import date
from typing import Any

from sidecar.core.mapping import Detail

log = logging.getLogger("sidecar.entry.cli.sync")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_sync_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "sync",
        help="fetch a patient's imaging into FHIR now, or backfill a whole PACS (--all)",
        description="Run the fetch-imaging use case for one Patient, or walk a PACS by date "
        "windows and run it for every patient found (--all; resumable).",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("patient_id", nargs="?", metavar="PATIENT_ID", help="FHIR Patient id")
    target.add_argument(
        "--identifier", metavar="SYSTEM|VALUE", help="find the Patient by this identifier"
    )
    target.add_argument("--all", action="store_true", help="backfill every study of the PACS")
    parser.add_argument(
        "--detail",
        choices=[d.value for d in Detail],
        default=Detail.INSTANCE.value,
        help="ImagingStudy depth (default instance)",
    )
    bf = parser.add_argument_group("backfill (--all)")
    bf.add_argument("--since", type=_date, metavar="DATE", help="first StudyDate (YYYY-MM-DD)")
    bf.add_argument("--until", type=_date, metavar="DATE", help="last StudyDate (YYYY-MM-DD)")
    bf.add_argument("--pacs", metavar="NAME", help="one configured PACS (default: each in turn)")
    bf.add_argument(
        "--create-patients",
        action="store_true",
        help="create a missing Patient from the DICOM demographics (conditional create)",
    )
    bf.add_argument("--window-days", type=_positive, default=90, metavar="N")
    bf.add_argument(
        "--workers", type=_positive, default=4, metavar="N", help="patients synced at once"
    )
    bf.add_argument("--restart", action="store_true", help="ignore the checkpoint")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    parser.set_defaults(func=cmd_sync)
    return parser


def cmd_sync(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.all and any(
        (args.since, args.until, args.pacs, args.create_patients, args.restart)
    ):
        print(
            "error: --since/--until/--pacs/--create-patients/--restart need --all", file=sys.stderr
        )
        return 2
    services = args.build()
    try:
        if args.pacs and args.pacs not in services.settings.pacs:
            names = ", ".join(services.settings.pacs)
            print(
                f"error: no PACS {args.pacs!r} is configured (SIDECAR_PACS: {names})",
                file=sys.stderr,
            )
            return 2
        if args.all:
            return _backfill(services, args)
        return _one(services.fetch, args)
    finally:
        services.close()


def _one(fetch: Any, args: argparse.Namespace) -> int:
    from sidecar.core.fetch_request import FetchRequest
    from sidecar.core.outcome import FetchError

    if args.identifier is not None:
        system, sep, value = args.identifier.rpartition("|")
        request = FetchRequest(identifier=(system or None, value) if sep else (None, value))
    else:
        request = FetchRequest(patient_id=args.patient_id)
    request = replace(request, detail=Detail(args.detail))
    try:
        result = fetch(request)
    except FetchError as exc:
        print(f"error ({exc.status}): {exc}", file=sys.stderr)
        return 1
    print(format_result(result))
    return 0


def format_result(result: Any) -> str:
    """A short, readable summary of a FetchResult: resource ids, dates, modalities
    and counts, never an identifier value, name or birth date (the output of a scheduled
    run ends up in a log)."""
    patient = result.patient
    lines = [
        f"Patient/{patient['id']}: {len(result.studies)} ImagingStudy "
        f"({result.created} created, {result.updated} updated, {result.unchanged} unchanged)"
    ]
    for study in result.studies:
        modalities = ",".join(m.get("code", "?") for m in study.get("modality") or [])
        lines.append(
            f"  ImagingStudy/{study['id']}  {study.get('started', '-')}  {modalities or '-'}  "
            f"{study.get('numberOfSeries', 0)} series  {study.get('numberOfInstances', 0)} "
            f"instances  {study.get('status', '')}"
        )
    for w in result.withdrawn:
        lines.append(f"  withdrawn: ImagingStudy/{w['id']} -> {w.get('status')}")
    for issue in result.issues:
        lines.append(f"  {issue.get('severity')}: {issue.get('diagnostics', '')}")
    return "\n".join(lines)


def _backfill(services: Any, args: argparse.Namespace) -> int:
    from sidecar.core.outcome import FetchError
    from sidecar.entry.cli.progress import Progress
    from sidecar.usecases.backfill import BackfillOptions

    names = [args.pacs] if args.pacs else list(services.settings.pacs)
    status = 0
    for name in names:
        options = BackfillOptions(
            pacs=name,
            since=args.since,
            until=args.until,
            window_days=args.window_days,
            create_patients=args.create_patients,
            workers=args.workers,
            restart=args.restart,
            detail=Detail(args.detail),
        )
        try:
            backfill = services.backfill(options)
            print(f"PACS {name}: checkpoint {backfill.checkpoint.path}", file=sys.stderr)
            report = backfill.run(progress=Progress)
        except (FetchError, ValueError) as exc:
            print(f"error: PACS {name}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"PACS {name}: {report.summary()}")
        if not report.ok:
            status = 1
    return status
