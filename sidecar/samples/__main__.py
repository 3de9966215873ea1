"""``python -m sidecar.samples write DIR`` / ``python -m sidecar.samples load --orthanc URL``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence

import pydicom

from sidecar.samples.generator import (
    SampleStudy,
    generate_corpus,
    generate_studies,
    write_files,
)
from sidecar.samples.loader import OrthancUnavailable, load_into_orthanc


def _sizing(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("sizing")
    g.add_argument("--studies-per-patient", type=int, default=1, metavar="N")
    g.add_argument("--series-per-study", type=int, default=3, metavar="N")
    g.add_argument("--instances-per-series", type=int, default=4, metavar="N")
    g.add_argument(
        "--target-instances",
        type=int,
        default=None,
        metavar="N",
        help="generate a corpus of exactly N instances over many patients "
        "(overrides the three options above)",
    )
    g.add_argument("--seed", type=int, default=0, metavar="S")


def _studies(args: argparse.Namespace) -> Iterator[tuple[SampleStudy, list[pydicom.Dataset]]]:
    if args.target_instances is not None:
        return generate_corpus(target_instances=args.target_instances, seed=args.seed)
    return generate_studies(
        studies_per_patient=args.studies_per_patient,
        series_per_study=args.series_per_study,
        instances_per_series=args.instances_per_series,
        seed=args.seed,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sidecar.samples",
        description="Deterministic synthetic DICOM studies: write them to disk or load them "
        "into Orthanc.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    w = sub.add_parser("write", help="write the studies as DICOM files under DIR")
    w.add_argument("directory", metavar="DIR")
    _sizing(w)

    ld = sub.add_parser("load", help="POST the studies to Orthanc's REST API")
    ld.add_argument("--orthanc", required=True, metavar="URL", help="e.g. http://localhost:8042")
    ld.add_argument("--user", default=None, metavar="U")
    ld.add_argument(
        "--password",
        default=None,
        metavar="P",
        help="default: the ORTHANC_PASSWORD environment variable",
    )
    ld.add_argument("--workers", type=int, default=8, metavar="N")
    _sizing(ld)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    studies = 0

    def datasets() -> Iterator[pydicom.Dataset]:
        nonlocal studies
        for _study, dss in _studies(args):
            studies += 1
            yield from dss

    if args.command == "write":
        paths = write_files(datasets(), args.directory)
        elapsed = time.perf_counter() - started
        print(f"wrote {len(paths)} files of {studies} studies to {args.directory}", end=" ")
        print(f"in {elapsed:.1f} s")
        return 0

    password = args.password if args.password is not None else os.environ.get("ORTHANC_PASSWORD")
    if args.user is not None and password is None:
        print("error: --user needs --password or ORTHANC_PASSWORD", file=sys.stderr)
        return 2
    auth = (args.user, password) if args.user is not None else None
    try:
        report = load_into_orthanc(
            datasets(), base_url=args.orthanc, auth=auth, workers=args.workers
        )
    except OrthancUnavailable as exc:
        print(f"error: Orthanc not reachable: {exc}", file=sys.stderr)
        return 1
    print(f"{studies} studies: {report.summary()}")
    for label, reason in report.failures[:10]:
        print(f"  failed {label}: {reason}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
