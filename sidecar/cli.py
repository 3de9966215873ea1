"""``dicom-fhir`` command line: one subcommand per module, registered in :func:`build_parser`.

Minimal for now (``convert``); further subcommands add themselves with an
``add_<name>_parser(subparsers)`` function that sets ``func`` on its parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from sidecar.cli_sync import add_sync_parser
from sidecar.convert import add_convert_parser
from subscription_handlers.cli import add_parsers as add_sync_queue_parsers


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="dicom-fhir", description="DICOM to FHIR R4 tools")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_convert_parser(subparsers)
    add_sync_parser(subparsers)
    add_serve_parser(subparsers)
    add_sync_queue_parsers(subparsers)  # worker, register, jobs
    return parser


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
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
