"""``dicom-fhir`` command line: one subcommand per module, registered in :func:`build_parser`.

Minimal for now (``convert``); further subcommands add themselves with an
``add_<name>_parser(subparsers)`` function that sets ``func`` on its parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from sidecar.cli_sync import add_sync_parser
from sidecar.convert import add_convert_parser


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="dicom-fhir", description="DICOM to FHIR R4 tools")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_convert_parser(subparsers)
    add_sync_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dicom-fhir`` script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
