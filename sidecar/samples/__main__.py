"""``python -m sidecar.samples write DIR`` / ``load --orthanc URL`` / ``seed --orthanc URL
--fhir URL [--wait]`` (the roster into Orthanc, then, once the sidecar's Subscription is
active, the demo Patient on the FHIR server, with the sidecar's own FHIR credentials)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence

import pydicom
import requests
from authlib.integrations.base_client import OAuthError

from sidecar.samples.generator import (
    SampleStudy,
    generate_corpus,
    generate_studies,
    write_files,
)
from sidecar.samples.loader import OrthancUnavailable, load_into_orthanc
from sidecar.settings import SyncSettings

#: the sidecar's default Subscription id (SIDECAR_SUBSCRIPTION_ID overrides it)
DEFAULT_SUBSCRIPTION_ID = SyncSettings.model_fields["subscription_id"].default
FHIR_JSON = "application/fhir+json"


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

    sd = sub.add_parser(
        "seed",
        help="load the sample roster into Orthanc and create the demo Patient on the FHIR "
        "server (docker-compose's seeder; safe to repeat)",
        epilog="The FHIR server is reached with the sidecar's own credentials (SIDECAR_FHIR_AUTH "
        "and the other SIDECAR_FHIR_* settings, docs/configuration.md): on a server that "
        "enforces SMART tokens, the sidecar's client credentials give a system token.",
    )
    sd.add_argument("--orthanc", required=True, metavar="URL")
    sd.add_argument("--fhir", required=True, metavar="URL", help="FHIR base URL")
    sd.add_argument("--user", default=None, metavar="U", help="default: SIDECAR_PACS_MAIN_USERNAME")
    sd.add_argument(
        "--password",
        default=None,
        metavar="P",
        help="default: SIDECAR_PACS_MAIN_PASSWORD or ORTHANC_PASSWORD",
    )
    sd.add_argument("--wait", action="store_true", help="wait until both servers answer")
    sd.add_argument("--wait-timeout", type=float, default=600.0, metavar="S")
    sd.add_argument(
        "--subscription-id",
        default=os.environ.get("SIDECAR_SUBSCRIPTION_ID") or DEFAULT_SUBSCRIPTION_ID,
        metavar="ID",
        help="wait (up to --wait-timeout) until Subscription/ID is active before creating the "
        "Patient: HAPI delivers nothing for a Patient created earlier (default: "
        "SIDECAR_SUBSCRIPTION_ID or %(default)s)",
    )
    sd.add_argument("--workers", type=int, default=4, metavar="N")
    return parser


def _fhir_session() -> requests.Session:
    """A session with the sidecar's FHIR credentials (``SIDECAR_FHIR_*``; none: anonymous).

    The compose seeder shares the sidecar's environment, so it writes the demo Patient as the
    sidecar's own client would: ``oauth2`` client credentials, a token renewed before it expires.
    """
    from sidecar.wiring.root import fhir_auth

    session = requests.Session()
    session.headers.update({"Accept": FHIR_JSON, "Content-Type": FHIR_JSON})
    session.auth = fhir_auth()
    return session


def _wait_until_up(
    urls: dict[str, str], auth: dict[str, tuple[str, str] | None], timeout: float
) -> bool:
    """Poll each URL until it answers 200 (HAPI takes a minute or more to start)."""
    deadline = time.monotonic() + timeout
    pending = dict(urls)
    while pending:
        for name, url in list(pending.items()):
            try:
                if requests.get(url, auth=auth.get(name), timeout=10).ok:
                    print(f"{name} is up ({url})")
                    del pending[name]
            except requests.RequestException:
                pass
        if pending:
            if time.monotonic() > deadline:
                print(f"error: not up after {timeout:.0f} s: {', '.join(pending)}", file=sys.stderr)
                return False
            time.sleep(2)
    return True


def _wait_until_active(
    fhir: str,
    subscription_id: str,
    timeout: float,
    *,
    interval: float = 1.0,
    session: requests.Session | None = None,
) -> bool:
    """Poll ``Subscription/{id}`` until the FHIR server has activated it (the sidecar
    registers it at start-up; HAPI moves it from ``requested`` to ``active``)."""
    http = session or requests.Session()
    url = f"{fhir}/Subscription/{subscription_id}"
    deadline = time.monotonic() + timeout
    status = "missing"
    while True:
        try:
            response = http.get(url, headers={"Accept": "application/fhir+json"}, timeout=10)
            if response.ok:
                status = response.json().get("status", "unknown")
            elif response.status_code in (404, 410):
                status = "missing"
            elif response.status_code in (401, 403):
                status = f"not readable with our credentials (HTTP {response.status_code})"
        except (requests.RequestException, ValueError):
            status = "unreachable"
        if status == "active":
            print(f"Subscription/{subscription_id} is active")
            return True
        if time.monotonic() > deadline:
            print(
                f"error: Subscription/{subscription_id} is {status} after {timeout:.0f} s "
                "(is the sidecar running? `dicom-fhir register --check`)",
                file=sys.stderr,
            )
            return False
        time.sleep(interval)


def seed(args: argparse.Namespace) -> int:
    from sidecar.samples.demo import DEMO_SYSTEM, DEMO_VALUE, ensure_demo_patient

    user = args.user or os.environ.get("SIDECAR_PACS_MAIN_USERNAME") or "orthanc"
    password = (
        args.password
        or os.environ.get("SIDECAR_PACS_MAIN_PASSWORD")
        or os.environ.get("ORTHANC_PASSWORD")
    )
    auth = (user, password) if password else None
    orthanc = args.orthanc.rstrip("/")
    fhir = args.fhir.rstrip("/")
    if args.wait and not _wait_until_up(
        {"orthanc": f"{orthanc}/system", "fhir": f"{fhir}/metadata?_summary=true"},
        {"orthanc": auth},
        args.wait_timeout,
    ):
        return 1
    datasets = (ds for _study, dss in generate_studies() for ds in dss)
    try:
        report = load_into_orthanc(datasets, base_url=orthanc, auth=auth, workers=args.workers)
    except OrthancUnavailable as exc:
        print(f"error: Orthanc not reachable: {exc}", file=sys.stderr)
        return 1
    print(f"sample roster: {report.summary()}")
    if not report.ok:
        return 1
    try:
        session = _fhir_session()
        if not _wait_until_active(fhir, args.subscription_id, args.wait_timeout, session=session):
            return 1
        patient, created = ensure_demo_patient(fhir, session)
    except (requests.RequestException, OAuthError) as exc:  # FHIR, or the token endpoint
        print(f"error: the FHIR server or its authorization server: {exc}", file=sys.stderr)
        return 1
    state = "created" if created else "already there"
    print(f"demo Patient/{patient['id']} ({DEMO_SYSTEM}|{DEMO_VALUE}): {state}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "seed":
        return seed(args)
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
