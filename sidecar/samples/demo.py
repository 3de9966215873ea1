"""``python -m sidecar.samples.demo``: the newcomer's tour on a running stack (``make demo``).

1. Create (idempotently: conditional on its identifier) a demo Patient whose identifier maps
   to a sample-roster PatientID with studies in PACS main.
2. Watch the automatic sync (Subscription -> sidecar -> worker) write its ImagingStudies.
3. Call ``$fetch-imaging`` on the FHIR server and print a readable summary: the Patient, each
   study, one instance's WADO-RS URL (Endpoint.address + UIDs) and a curl line for a
   rendered frame.

Running it again changes nothing on the server. ``ensure_demo_patient`` is also what
``python -m sidecar.samples seed`` (docker-compose's seeder) uses.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import requests

FHIR_JSON = "application/fhir+json"
#: The sample roster's first patient (sidecar.samples: P-1001, issuer HOSP-A).
DEMO_SYSTEM = "urn:example:mrn:hosp-a"
DEMO_VALUE = "P-1001"
DEMO_PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "identifier": [{"system": DEMO_SYSTEM, "value": DEMO_VALUE}],
    "name": [{"use": "official", "family": "Doe", "given": ["Jane"], "text": "Jane Doe"}],
    "gender": "female",
    "birthDate": "1970-04-12",
}
_NO_CACHE = {"Cache-Control": "no-cache"}  # HAPI reuses search results for 60 s otherwise


def _session(token: str = "") -> requests.Session:
    session = requests.Session()
    session.headers.update({"Accept": FHIR_JSON, "Content-Type": FHIR_JSON})
    if token:  # a FHIR server that enforces SMART tokens (the local stack's HAPI)
        session.headers["Authorization"] = f"Bearer {token}"
    return session


def ensure_demo_patient(
    fhir_base: str, session: requests.Session | None = None, *, timeout: float = 30.0
) -> tuple[dict[str, Any], bool]:
    """The demo Patient (created if no Patient has its identifier) and whether it was created.

    A conditional create (``If-None-Exist``) keeps reruns and concurrent seeders from making
    a second one.
    """
    http = session or _session()
    base = fhir_base.rstrip("/")
    response = http.post(
        f"{base}/Patient",
        json=DEMO_PATIENT,
        headers={
            "If-None-Exist": f"identifier={DEMO_SYSTEM}|{DEMO_VALUE}",
            "Prefer": "return=representation",
        },
        timeout=timeout,
    )
    response.raise_for_status()
    created = response.status_code == 201
    body = response.json() if response.content else {}
    if body.get("resourceType") != "Patient":  # some servers answer 200 without a body
        found = http.get(
            f"{base}/Patient",
            params={"identifier": f"{DEMO_SYSTEM}|{DEMO_VALUE}"},
            headers=_NO_CACHE,
            timeout=timeout,
        ).json()
        body = found["entry"][0]["resource"]
    return body, created


def wait_for_studies(
    fhir_base: str, patient_id: str, session: requests.Session, *, timeout: float
) -> tuple[int, float]:
    """Poll until ImagingStudies of the Patient appear: (how many, seconds waited)."""
    started = time.monotonic()
    while True:
        bundle = session.get(
            f"{fhir_base}/ImagingStudy",
            params={"subject": f"Patient/{patient_id}", "_summary": "count"},
            headers=_NO_CACHE,
            timeout=30,
        ).json()
        count = int(bundle.get("total") or 0)
        waited = time.monotonic() - started
        if count or waited > timeout:
            return count, waited
        time.sleep(0.5)


def fetch_imaging(fhir_base: str, patient_id: str, session: requests.Session) -> dict[str, Any]:
    """``POST [base]/Patient/{id}/$fetch-imaging`` on the FHIR server; the searchset Bundle."""
    response = session.post(
        f"{fhir_base}/Patient/{patient_id}/$fetch-imaging",
        json={"resourceType": "Parameters"},
        timeout=180,
    )
    if not response.ok:
        raise RuntimeError(
            f"$fetch-imaging answered HTTP {response.status_code}: {response.text[:500]}"
        )
    return response.json()


def _coding_codes(items: list[dict[str, Any]] | None) -> list[str]:
    return [str(c.get("code")) for c in items or [] if c.get("code")]


def instance_url(study: dict[str, Any], endpoints: dict[str, dict[str, Any]]) -> str | None:
    """WADO-RS URL of the first image instance (not SR): Endpoint.address + the three UIDs."""
    ref = ((study.get("endpoint") or [{}])[0]).get("reference", "")
    endpoint = endpoints.get(ref.rpartition("/")[2])
    uid = next(
        (i["value"] for i in study.get("identifier", []) if i.get("system") == "urn:dicom:uid"),
        None,
    )
    if endpoint is None or uid is None:
        return None
    series = sorted(
        study.get("series") or [], key=lambda s: s.get("modality", {}).get("code") == "SR"
    )
    for s in series:
        for instance in s.get("instance") or []:
            return (
                f"{endpoint['address'].rstrip('/')}/studies/{uid.removeprefix('urn:oid:')}"
                f"/series/{s['uid']}/instances/{instance['uid']}"
            )
    return None


def summary_lines(patient: dict[str, Any], bundle: dict[str, Any]) -> list[str]:
    """The readable summary ``make demo`` prints (tests check these lines)."""
    resources = [e["resource"] for e in bundle.get("entry", [])]
    studies = [r for r in resources if r["resourceType"] == "ImagingStudy"]
    endpoints = {r["id"]: r for r in resources if r["resourceType"] == "Endpoint"}
    ident = ", ".join(f"{i.get('system')}|{i.get('value')}" for i in patient.get("identifier", []))
    name = next((n.get("text") for n in patient.get("name", []) if n.get("text")), "-")
    lines = [f"Patient/{patient['id']}  identifier {ident}  name {name}"]
    lines.append(f"{len(studies)} ImagingStudy:")
    for study in studies:
        modalities = ",".join(_coding_codes(study.get("modality"))) or "-"
        lines.append(
            f"  study {study.get('started', '-')[:10]}  {study.get('description', '-')}  "
            f"[{modalities}]  {study.get('numberOfSeries', 0)} series, "
            f"{study.get('numberOfInstances', 0)} instances  (ImagingStudy/{study['id']})"
        )
    for outcome in (r for r in resources if r["resourceType"] == "OperationOutcome"):
        for item in outcome.get("issue", []):
            lines.append(f"  {item.get('severity')}: {item.get('diagnostics', '')}")
    url = next((u for u in (instance_url(s, endpoints) for s in studies) if u), None)
    if url:
        lines.append(f"WADO-RS instance: {url}")
        lines.append(
            "rendered frame:   curl -fsS "
            '-u "${ORTHANC_USERNAME:-orthanc}:${ORTHANC_PASSWORD:-orthanc}" '
            f"-H 'Accept: image/jpeg' '{url}/frames/1/rendered' -o frame.jpg"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sidecar.samples.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--fhir",
        default=os.environ.get("SIDECAR_FHIR_BASE_URL", "http://127.0.0.1:8080/fhir"),
        metavar="URL",
    )
    parser.add_argument("--sync-timeout", type=float, default=120.0, metavar="S")
    parser.add_argument(
        "--token-env",
        default="DEMO_FHIR_TOKEN",
        metavar="NAME",
        help="environment variable holding a bearer token for the FHIR server (demo.sh sets it "
        "from `stack.sh token --system`); unset: no Authorization header",
    )
    args = parser.parse_args(argv)
    base = args.fhir.rstrip("/")
    # from the environment, not the command line: a token in argv is visible to every local user
    http = _session(os.environ.get(args.token_env, ""))

    patient, created = ensure_demo_patient(base, http)
    state = "created" if created else "already there (nothing created)"
    print(f"demo Patient/{patient['id']} ({DEMO_SYSTEM}|{DEMO_VALUE}): {state}")

    count, waited = wait_for_studies(base, patient["id"], http, timeout=args.sync_timeout)
    if count:
        how = "automatic sync" if created else "already synced"
        print(f"{how}: {count} ImagingStudy on the FHIR server after {waited:.1f} s")
    else:
        print(
            f"automatic sync: no ImagingStudy after {waited:.0f} s (is the sidecar's Subscription "
            "active? `dicom-fhir register --check`); $fetch-imaging will fetch them now",
            file=sys.stderr,
        )

    bundle = fetch_imaging(base, patient["id"], http)
    print(f"\n$fetch-imaging on {base}/Patient/{patient['id']}:")
    for line in summary_lines(patient, bundle):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
