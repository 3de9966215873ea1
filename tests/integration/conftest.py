"""Fixtures for $fetch-imaging on the real stack: a gunicorn-served sidecar, FHIR Patients,
and the truth about PACS content read from Orthanc's own REST API (not from QIDO)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import CLEARED_TYPES, clear_fhir, stack_sh

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = {
    "HOSP-A": "urn:example:mrn:hosp-a",
    "HOSP-B": "urn:example:mrn:hosp-b",
    None: "urn:example:mrn:no-issuer",
}
PACS_TIMEOUT_SECONDS = 5.0


def identifier_mappings() -> str:
    return ",".join(f"{s}|{i}" if i else s for i, s in SYSTEMS.items())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Sidecar:
    url: str
    secret: str
    env: dict[str, str]
    log_path: Path

    def fetch(self, patient_id: str, params=None, *, method="POST", headers=None, **kw):
        hdrs = {"X-Sidecar-Secret": self.secret} if headers is None else headers
        return requests.request(
            method,
            f"{self.url}/fhir/Patient/{patient_id}/$fetch-imaging",
            params=params,
            headers=hdrs,
            timeout=120,
            **kw,
        )


@pytest.fixture(scope="session")
def sidecar(stack) -> Iterator[Sidecar]:
    """The sidecar under gunicorn (gthread) with the stack's settings, on a free port."""
    port = int(os.environ.get("SIDECAR_TEST_PORT") or free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env.update(stack.env())
    env.update(
        {
            "SIDECAR_PATIENT_IDENTIFIERS": identifier_mappings(),
            "SIDECAR_PACS_TIMEOUT_SECONDS": str(PACS_TIMEOUT_SECONDS),
            "SIDECAR_PACS_CONNECT_TIMEOUT_SECONDS": "2",
            "SIDECAR_RELAY_SECRET": stack.relay_secret,
            "SIDECAR_NOTIFY_SECRET": stack.notify_secret,
            "SIDECAR_BEARER_TOKENS": "test-bearer-token",
            # Endpoint.address: this sidecar's own imaging gateway
            "SIDECAR_PUBLIC_URL": f"http://127.0.0.1:{port}",
            # its own queue: the demo's (var/sidecar) is the demo's
            "SIDECAR_DATA_DIR": str(stack.data_dir / "test-sidecar"),
            "PYTHONPATH": str(ROOT),
        }
    )
    log_path = stack.data_dir / f"sidecar-test-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-k",
                "sidecar.entry.gunicorn_worker.FhirThreadWorker",
                "--threads",
                "8",
                "-w",
                "1",
                "-b",
                f"127.0.0.1:{port}",
                "sidecar.wiring:create_web_app()",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/livez", timeout=5).ok:
                    break
            except requests.RequestException:
                pass  # gunicorn binds before the app is loaded
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sidecar did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield Sidecar(url, stack.relay_secret, env, log_path)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


SIDECAR_PORT = int(os.environ.get("STACK_SIDECAR_PORT", "8090"))  # where HAPI relays $fetch-imaging
SIDECAR_URL = f"http://127.0.0.1:{SIDECAR_PORT}"


def _running() -> set[str]:
    return {line.split()[0] for line in stack_sh("status").splitlines() if " running " in line}


def start_stack_sidecar() -> None:
    """``stack.sh up sidecar`` without a Subscription of its own (so other tests' Patients
    are not synced behind their backs)."""
    from tests.integration.conftest_sync import release_port

    release_port(SIDECAR_PORT)  # an AckServer an earlier test left on it
    os.environ["SIDECAR_REGISTER_ON_START"] = "false"
    try:
        stack_sh("up", "sidecar")
    finally:
        del os.environ["SIDECAR_REGISTER_ON_START"]


@pytest.fixture(scope="module")
def stack_sidecar(stack) -> Iterator[str]:
    """The stack's own sidecar, the one HAPI's provider relays to; stopped again if this
    module started it."""
    from tests.integration.conftest_sync import keep_alive

    started = "sidecar" not in _running()
    start_stack_sidecar()
    yield SIDECAR_URL
    if started:
        stack_sh("down", "sidecar")
        keep_alive(SIDECAR_PORT)  # for deliveries HAPI may still owe a deleted Subscription


@pytest.fixture
def fhir(stack, fhir_http):
    """A clean FHIR server (no ImagingStudy/Endpoint/Patient) and helpers to use it.

    Searches bypass HAPI's search cache (Cache-Control: no-cache): a cached id list from
    an earlier test would leave resources behind."""
    helper = FhirHelper(stack.fhir_base, fhir_http)
    helper.clear()
    return helper


class FhirHelper:
    def __init__(self, base: str, http: requests.Session) -> None:
        self.base = base
        self.http = http

    def put_patient(self, patient_id: str, identifiers: list[tuple[str | None, str]]) -> dict:
        body = {
            "resourceType": "Patient",
            "id": patient_id,
            "identifier": [{"system": SYSTEMS[i], "value": v} for i, v in identifiers],
        }
        r = self.http.put(f"{self.base}/Patient/{patient_id}", json=body)
        r.raise_for_status()
        return r.json()

    def search(self, query: str) -> list[dict]:
        out, url = [], f"{self.base}/{query}"
        while url:
            page = self.http.get(url, headers={"Cache-Control": "no-cache"})
            page.raise_for_status()
            bundle = page.json()
            out += [e["resource"] for e in bundle.get("entry", [])]
            url = next(
                (lnk["url"] for lnk in bundle.get("link", []) if lnk["relation"] == "next"), None
            )
        return out

    def clear(self, types=CLEARED_TYPES) -> None:
        clear_fhir(self.http, self.base, types)

    def studies_of(self, patient_id: str) -> list[dict]:
        return self.search(f"ImagingStudy?subject=Patient/{patient_id}&_count=200")


def orthanc_study_uids(pacs, patient_id: str, issuer: str | None) -> set[str]:
    """StudyInstanceUIDs Orthanc holds for exactly this PatientID (and issuer, if given),
    from Orthanc's REST API: /studies?expand, then the study's shared tags for the issuer."""
    http = requests.Session()
    http.auth = pacs.auth
    studies = http.get(f"{pacs.base_url}/studies", params={"expand": ""}, timeout=60)
    studies.raise_for_status()
    uids = set()
    for study in studies.json():
        if study["PatientMainDicomTags"].get("PatientID") != patient_id:
            continue
        if issuer is not None:
            tags = http.get(
                f"{pacs.base_url}/studies/{study['ID']}/shared-tags",
                params={"simplify": ""},
                timeout=30,
            ).json()
            if tags.get("IssuerOfPatientID") != issuer:
                continue
        uids.add(study["MainDicomTags"]["StudyInstanceUID"])
    return uids


def bundle_studies(bundle: dict) -> list[dict]:
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if e["resource"]["resourceType"] == "ImagingStudy"
    ]


def study_uid(study: dict) -> str:
    ident = next(i for i in study["identifier"] if i["system"] == "urn:dicom:uid")
    return ident["value"].removeprefix("urn:oid:")
