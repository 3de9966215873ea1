"""Session fixtures for tests on the real local stack (deploy/local/stack.sh).

The stack is brought up once per session when it is not already running and left running
(set STACK_TEARDOWN=1 to stop what the session started). Tests stay independent without a
JVM restart: FHIR state is cleared per test by `clean_fhir`; PACS content is the fixed,
idempotently loaded sample roster.

HAPI enforces SMART tokens of the stack's Keycloak: every direct FHIR call goes through
`fhir_http`, which carries the sidecar's system token (client credentials, renewed before it
expires), or `Stack.auth_headers()`; settings built for a test take `Stack.fhir_env()`.
Ports follow the stack's variables (STACK_HAPI_PORT, STACK_PACS_PORT_<NAME>, ...).
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import requests.auth
from authlib.integrations.requests_client import OAuth2Session

ROOT = Path(__file__).resolve().parents[1]
STACK_SH = ROOT / "deploy" / "local" / "stack.sh"
PACS_NAMES = ("main", "second")
PACS_PORTS = {
    name: int(os.environ.get(f"STACK_PACS_PORT_{name.upper()}", default))
    for name, default in (("main", 8042), ("second", 8043))
}


@dataclass(frozen=True)
class PacsServer:
    """One Orthanc instance of the local stack."""

    name: str
    base_url: str  # Orthanc's own REST API
    username: str
    password: str

    @property
    def dicomweb_url(self) -> str:
        return f"{self.base_url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)


@dataclass
class Stack:
    """URLs and credentials of the running stack, and control over its PACS."""

    fhir_base: str
    pacs: dict[str, PacsServer]
    relay_secret: str  # what HAPI's provider sends the sidecar
    notify_secret: str  # what the Subscription's header carries
    data_dir: Path
    started_here: list[str] = field(default_factory=list)
    _system_token: tuple[str, float] | None = field(default=None, repr=False)

    def run(self, *args: str) -> str:
        return stack_sh(*args)

    def stop_pacs(self, name: str) -> None:
        stack_sh("down", f"pacs-{name}")

    def start_pacs(self, name: str) -> None:
        stack_sh("up", f"pacs-{name}")

    def env(self) -> dict[str, str]:
        """The SIDECAR_* settings that point a sidecar at this stack."""
        return stack_env()

    def fhir_env(self) -> dict[str, str]:
        """The FHIR server's settings alone (base URL and the sidecar's oauth2 credentials)."""
        return {k: v for k, v in self.env().items() if k.startswith("SIDECAR_FHIR_")}

    def token(self, *args: str) -> str:
        """``stack.sh token ARGS``: --system, --user NAME or --patient Patient/ID."""
        return stack_sh("token", *args).strip()

    def auth_headers(self) -> dict[str, str]:
        """A system token's Authorization header, for a call outside `fhir_http` (the token
        is kept and fetched again 30 s before it expires)."""
        if os.environ.get("STACK_AUTH") == "none":
            return {}
        if self._system_token is None or self._system_token[1] - time.time() < 30:
            token = self.token("--system")
            self._system_token = (token, float(token_claims(token)["exp"]))
        return {"Authorization": f"Bearer {self._system_token[0]}"}


def token_claims(token: str) -> dict:
    """A JWT's claims, unverified (to read exp, patient, ... of a token the stack issued)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def stack_env() -> dict[str, str]:
    """``stack.sh env``: the SIDECAR_* settings of the running stack, FHIR credentials included."""
    words = shlex.split(stack_sh("env"))  # `export NAME=value` lines, shell-quoted
    pairs = (word.split("=", 1) for word in words if word != "export")
    return {key: value for key, value in pairs}


def with_pacs(env: dict[str, str], names: list[str]) -> dict[str, str]:
    """``env`` configured for exactly these PACS: SIDECAR_PACS set, the variables of every
    other PACS dropped (a variable of a PACS that is not configured stops the start)."""
    from sidecar.settings import FIXED_NAMES

    kept = {
        k: v
        for k, v in env.items()
        if not k.startswith("SIDECAR_PACS_")
        or k.removeprefix("SIDECAR_") in FIXED_NAMES
        or any(k.startswith(f"SIDECAR_PACS_{n.upper()}_") for n in names)
    }
    return {**kept, "SIDECAR_PACS": ",".join(names)}


def stack_sh(*args: str) -> str:
    # the sidecar that stack.sh may start runs on this interpreter (the one with our deps)
    env = {"PYTHON": sys.executable, **os.environ, "STACK_PACS": " ".join(PACS_NAMES)}
    done = subprocess.run(
        ["bash", str(STACK_SH), *args], env=env, capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        raise RuntimeError(f"stack.sh {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def _running_components() -> set[str]:
    status = stack_sh("status")
    return {line.split()[0] for line in status.splitlines() if " running " in line}


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    auth = [] if os.environ.get("STACK_AUTH") == "none" else ["keycloak"]
    wanted = [*auth, "hapi", *(f"pacs-{name}" for name in PACS_NAMES)]
    before = _running_components()
    stack_sh("up", *wanted)
    data_dir = Path(os.environ.get("STACK_DATA_DIR", ROOT / "var"))
    username = os.environ.get("ORTHANC_USERNAME", "orthanc")
    password = os.environ.get("ORTHANC_PASSWORD", "orthanc")
    relay = os.environ.get("SIDECAR_RELAY_SECRET") or (data_dir / "relay-secret").read_text()
    notify = os.environ.get("SIDECAR_NOTIFY_SECRET") or (data_dir / "notify-secret").read_text()
    running = Stack(
        fhir_base=f"http://127.0.0.1:{os.environ.get('STACK_HAPI_PORT', '8080')}/fhir",
        pacs={
            name: PacsServer(name, f"http://127.0.0.1:{port}", username, password)
            for name, port in PACS_PORTS.items()
        },
        relay_secret=relay.strip(),
        notify_secret=notify.strip(),
        data_dir=data_dir,
        started_here=[c for c in wanted if c not in before],
    )
    demo = "sidecar" in before
    if demo:  # `make demo` left its sidecar running: it would sync the tests' Patients
        pause_demo(running)
    try:
        yield running
    finally:
        if demo:
            stack_sh("up", "sidecar")  # it registers its Subscription again (active)
    if os.environ.get("STACK_TEARDOWN") == "1" and running.started_here:
        stack_sh("down", *running.started_here)


DEMO_SUBSCRIPTION = "dicom-fhir-sidecar-patient"


def pause_demo(stack: Stack) -> None:
    """Stop the demo's sidecar (its embedded worker and triggers with it) and turn its
    Subscription ``off``, so HAPI neither delivers the tests' Patients to it nor waits on a
    stopped endpoint; the demo's sidecar turns it back on when it starts again."""
    stack_sh("down", "sidecar")
    with system_session(stack.env()) as http:
        url = f"{stack.fhir_base}/Subscription/{DEMO_SUBSCRIPTION}"
        found = http.get(url, headers={"Cache-Control": "no-cache"})
        if found.status_code == 200:
            subscription = {**found.json(), "status": "off"}
            subscription.pop("meta", None)
            http.put(url, json=subscription, headers={"Content-Type": "application/fhir+json"})


def system_session(env: dict[str, str]) -> requests.Session:
    """A session with the sidecar's client-credentials token (SMART Backend Services), fetched
    again by authlib when it is within 30 s of expiring; a plain session without oauth2."""
    if env.get("SIDECAR_FHIR_AUTH") != "oauth2":
        return requests.Session()
    session = OAuth2Session(
        env["SIDECAR_FHIR_CLIENT_ID"],
        env["SIDECAR_FHIR_CLIENT_SECRET"],
        scope=env["SIDECAR_FHIR_SCOPE"],
        token_endpoint=env["SIDECAR_FHIR_TOKEN_URL"],
        grant_type="client_credentials",
        leeway=30,
    )
    session.fetch_token()
    return session


class SystemTokenAuth(requests.auth.AuthBase):
    """The system token of a `system_session` on any other session's requests, renewed alike."""

    def __init__(self, env: dict[str, str]) -> None:
        self.session = system_session(env)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if isinstance(self.session, OAuth2Session):
            self.session.ensure_active_token(self.session.token)
            request.headers["Authorization"] = f"Bearer {self.session.token['access_token']}"
        return request


@pytest.fixture(scope="session")
def fhir_http(stack: Stack) -> Iterator[requests.Session]:
    """A pooled HTTP session for direct FHIR calls in tests (JSON in and out), with a system
    token HAPI accepts."""
    with system_session(stack.env()) as session:
        session.headers.update(
            {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}
        )
        yield session


@pytest.fixture(scope="session")
def sample_data(stack: Stack) -> list:
    """The fixed sample roster, loaded (idempotently) into PACS "main"."""
    from sidecar.samples.generator import generate_studies
    from sidecar.samples.loader import load_into_orthanc

    pacs = stack.pacs["main"]
    studies, datasets = [], []
    for study, instances in generate_studies():
        studies.append(study)
        datasets.extend(instances)
    report = load_into_orthanc(datasets, base_url=pacs.base_url, auth=pacs.auth)
    assert not report.failed, f"sample data failed to load: {report}"
    return studies


CLEARED_TYPES = ("ImagingStudy", "Endpoint", "Patient")


def clear_fhir(session: requests.Session, fhir_base: str, types=CLEARED_TYPES) -> int:
    """Delete every resource of `types` in one transaction per page; returns how many."""
    deleted = 0
    for resource_type in types:
        while True:
            page = session.get(
                f"{fhir_base}/{resource_type}",
                params={"_elements": "id", "_count": 500},
                headers={"Cache-Control": "no-cache"},  # HAPI caches searches for 60 s
            )
            page.raise_for_status()
            ids = [e["resource"]["id"] for e in page.json().get("entry", [])]
            if not ids:
                break
            bundle = {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {"request": {"method": "DELETE", "url": f"{resource_type}/{i}"}} for i in ids
                ],
            }
            response = session.post(fhir_base, json=bundle)
            if response.status_code == 409:  # still referenced: clear referrers first
                clear_fhir(session, fhir_base, types=("ImagingStudy",))
                response = session.post(fhir_base, json=bundle)
            response.raise_for_status()
            deleted += len(ids)
    return deleted


@pytest.fixture
def clean_fhir(stack: Stack, fhir_http: requests.Session) -> Stack:
    """Start the test with no ImagingStudy/Endpoint/Patient/Subscription on HAPI."""
    clear_fhir(fhir_http, stack.fhir_base)
    return stack
