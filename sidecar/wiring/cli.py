"""``dicom-fhir``: every command in one parser, each handed the root's builder.

The commands live with their layer (``sidecar/entry/cli/``, ``subscription_handlers/entry/cli.py``);
this module only assembles them and sets ``args.build`` (:func:`sidecar.wiring.build`), so a
command never builds its own clients and no entry module imports the composition root.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from sidecar import __version__
from sidecar.entry.cli.check import add_check_parser
from sidecar.entry.cli.convert import add_convert_parser
from sidecar.entry.cli.sync import add_sync_parser
from sidecar.settings import SettingsError
from subscription_handlers.entry.cli import add_parsers as add_sync_queue_parsers


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="dicom-fhir", description="DICOM to FHIR R4 tools")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.set_defaults(build=_build)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_convert_parser(subparsers)
    add_sync_parser(subparsers)
    add_serve_parser(subparsers)
    add_sync_queue_parsers(subparsers)  # worker, register, jobs
    add_check_parser(subparsers)
    return parser


def _build() -> Any:
    """The process's services (the root is imported only when a command needs it)."""
    from sidecar.wiring.root import build

    return build()


def add_serve_parser(subparsers: Any) -> None:
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
    from sidecar.wiring.server import serve

    serve(
        bind=args.bind,
        workers=args.workers,
        embedded_worker=not args.no_worker,
        threads=args.threads,
        register=False if args.no_register else None,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dicom-fhir`` script (and ``python -m sidecar``)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"settings: invalid: {exc}", file=sys.stderr)
        return 2
