"""What the browser tests look at, made on the REAL local stack: Keycloak (realm dicom-fhir),
HAPI enforcing its tokens, both Orthanc PACS with the sample roster, and the sidecar
(``dicom-fhir serve``: gunicorn and its embedded worker) started here on the stack's sidecar
port, the origin the viewer's Keycloak client and HAPI's CORS allow.

Made once for the browser tests (``tests/browser/conftest.py``: ``world``), in this order:

1. FHIR emptied; the stack's own sidecar stopped (started again afterwards) and the
   stack's Subscription deleted (it comes back with that sidecar); this sidecar has a notify
   secret of its own, so no delivery of the stack's changes what the tests look at.
2. A dead letter, deterministically: Patient D (the roster's P-1004) is re-synced by a
   sidecar whose PACS main refuses connections (``http://127.0.0.1:9``) and which allows one
   attempt per sync (``SIDECAR_SYNC_MAX_ATTEMPTS=1``): the job fails once and is dead. That
   sidecar stops.
3. The sidecar is started again, pointed back at PACS main, on the same queue (its
   triggers run, the catch-up looking back one second only: it must not revive D before the
   operator does). Patients A (P-1001, the demo patient) and B (P-1002) get their imaging
   with ``$fetch-imaging``; the twins C1 and C2 both carry P-1005, and C1's re-sync is
   refused as an identity conflict. Keycloak users ``demo-patient`` and ``patient-b`` are
   bound to A and B; ``practitioner`` and ``operator`` are the realm's demo users.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.conftest import ROOT, Stack, clear_fhir, stack_sh

MRN = "urn:example:mrn:hosp-a"
SUBSCRIPTION = "dicom-fhir-sidecar-patient"  # the stack sidecar's (docs/sync.md)
REFUSING = "http://127.0.0.1:9/dicom-web"  # the discard port: connections are refused at once
PATIENTS = {  # role -> (sample roster PatientID, name)
    "a": ("P-1001", ("Doe", "Jane")),
    "b": ("P-1002", ("Smith", "John")),
    "dead": ("P-1004", ("Okafor", "Chidi")),
    "twin1": ("P-1005", ("Nguyen", "Lan")),
    "twin2": ("P-1005", ("Nguyen", "Lan")),
}


def wait_for(check: Callable[[], object], timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s: {what}")
        time.sleep(every)


@dataclass
class Sidecar:
    """One ``dicom-fhir serve`` process on the stack's sidecar port."""

    env: dict[str, str]
    port: int
    log: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Sidecar:
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sidecar", "serve", "--bind", f"127.0.0.1:{self.port}"]
                + ["--workers", "1", "--threads", "8"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the sidecar exited:\n{self.log.read_text()[-3000:]}")
            try:
                return requests.get(f"{self.url}/livez", timeout=2).ok
            except requests.RequestException:
                return False

        wait_for(up, 90, "the sidecar answers /livez")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # serve stops gunicorn, then its worker
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@dataclass
class World:
    stack: Stack
    fhir: requests.Session  # the system token (clear, create Patients)
    port: int
    folder: Path
    password: str  # every demo user's ($VAR/keycloak-demo-password)
    patients: dict[str, str] = field(default_factory=dict)  # role -> Patient id
    sidecar: Sidecar | None = None
    restart_stack_sidecar: bool = False

    # -- where things are ------------------------------------------------------------------

    @property
    def sidecar_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def viewer_url(self) -> str:
        return f"{self.sidecar_url}/viewer/"

    @property
    def admin_url(self) -> str:
        return f"{self.sidecar_url}/admin/"

    @property
    def issuer(self) -> str:
        return self.stack.env()["SIDECAR_AUTH_ISSUER"]

    @property
    def users(self) -> dict[str, str]:
        """The sign-in of each test role: ``username:password``."""
        names = {
            "patient_a": "demo-patient",
            "patient_b": "patient-b",
            "clinician": "practitioner",
            "operator": "operator",
        }
        return {role: f"{name}:{self.password}" for role, name in names.items()}

    # -- making it ------------------------------------------------------------------------

    def env(self, **changes: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
        env.update(self.stack.env())
        env.update(
            {
                "SIDECAR_DATA_DIR": str(self.folder / "data"),
                "SIDECAR_RELAY_SECRET": self.stack.relay_secret,
                "SIDECAR_NOTIFY_SECRET": self.notify_secret,
                "SIDECAR_REGISTER_ON_START": "false",
                "SIDECAR_SUBSCRIPTION_ID": "dicom-fhir-browser-tests",
                "SIDECAR_PUBLIC_URL": self.sidecar_url,
                "SIDECAR_SYNC_MAX_ATTEMPTS": "1",
                "SIDECAR_PACS_RETRIES": "0",
                "SIDECAR_PACS_CONNECT_TIMEOUT_SECONDS": "2",
                "SIDECAR_QUEUE_POLL_MAX_SECONDS": "0.2",
                "SIDECAR_CATCH_UP_LOOKBACK_SECONDS": "1",
                "SIDECAR_CATCH_UP_OVERLAP_SECONDS": "0",
                "PYTHONPATH": str(ROOT),
            }
        )
        env.update(changes)
        return env

    def start_sidecar(self, name: str, **changes: str) -> Sidecar:
        self.sidecar = Sidecar(self.env(**changes), self.port, self.folder / f"{name}.log")
        return self.sidecar.start()

    def make(self) -> World:
        self.notify_secret = secrets.token_urlsafe(24)
        running = {
            line.split()[0] for line in stack_sh("status").splitlines() if " running " in line
        }
        if "sidecar" in running:
            stack_sh("down", "sidecar")
            self.restart_stack_sidecar = True
        shutil.rmtree(self.folder, ignore_errors=True)
        (self.folder / "data").mkdir(parents=True)
        stack_sh("keycloak-allow-origin", self.sidecar_url)  # a no-op when already allowed
        self.fhir.delete(f"{self.stack.fhir_base}/Subscription/{SUBSCRIPTION}")
        clear_fhir(self.fhir, self.stack.fhir_base)

        self.patients["dead"] = self.create_patient("dead")
        self.start_sidecar(
            "sidecar-refusing-pacs", SIDECAR_PACS_MAIN_URL=REFUSING, SIDECAR_TRIGGERS="false"
        )
        self.operator_post(f"patients/{self.patients['dead']}/resync")
        wait_for(lambda: self.dead_letter(self.patients["dead"]), 60, "Patient D's dead letter")
        self.sidecar.stop()

        for role in ("a", "b", "twin1", "twin2"):
            self.patients[role] = self.create_patient(role)
        self.start_sidecar("sidecar")
        for role in ("a", "b"):
            self.fetch_imaging(self.patients[role])
        self.operator_post(f"patients/{self.patients['twin1']}/resync")
        wait_for(lambda: self.conflict(self.patients["twin1"]), 60, "C1's identity conflict")
        stack_sh("user", "demo-patient", "--patient", f"Patient/{self.patients['a']}")
        stack_sh("user", "patient-b", "--patient", f"Patient/{self.patients['b']}")
        return self

    def close(self) -> None:
        if self.sidecar is not None:
            self.sidecar.stop()
        if self.restart_stack_sidecar:
            stack_sh("up", "sidecar")

    def create_patient(self, role: str) -> str:
        value, (family, given) = PATIENTS[role]
        body = {
            "resourceType": "Patient",
            "identifier": [{"system": MRN, "value": value}],
            "name": [{"family": family, "given": [given]}],
        }
        answer = self.fhir.post(f"{self.stack.fhir_base}/Patient", json=body)
        answer.raise_for_status()
        return answer.json()["id"]

    def fetch_imaging(self, patient_id: str) -> None:
        answer = requests.post(
            f"{self.sidecar_url}/fhir/Patient/{patient_id}/$fetch-imaging",
            headers={"X-Sidecar-Secret": self.stack.relay_secret},
            timeout=120,
        )
        assert answer.ok, answer.text

    # -- the operator API, as scripts use it ------------------------------------------------

    def operator_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.stack.token('--user', 'operator')}"}

    def operator_get(self, path: str) -> dict:
        answer = requests.get(
            f"{self.sidecar_url}/admin/api/{path}", headers=self.operator_headers(), timeout=60
        )
        assert answer.ok, answer.text
        return answer.json()

    def operator_post(self, path: str) -> dict:
        answer = requests.post(
            f"{self.sidecar_url}/admin/api/{path}", headers=self.operator_headers(), timeout=60
        )
        assert answer.ok, answer.text
        return answer.json()

    def dead_letter(self, patient_id: str) -> dict | None:
        rows = self.operator_get("overview")["deadLetters"]
        return next((r for r in rows if r["patient"] == f"Patient/{patient_id}"), None)

    def conflict(self, patient_id: str) -> dict | None:
        rows = self.operator_get("overview")["conflicts"]
        return next((r for r in rows if r["patient"] == f"Patient/{patient_id}"), None)
