"""One settings object: a TOML ``fhir_base_url`` reaches every consumer.

The first wave's registration and watchdog read only the environment and registered on the
default FHIR server while ``$fetch-imaging`` used the configured one. Here a fake FHIR
server listens only at the TOML file's address, and every consumer must reach it: the use
case, registration, the watchdog, ``/healthz`` and ``dicom-fhir check``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from werkzeug import Request, Response

from sidecar import wiring
from sidecar.core.fetch_request import FetchRequest
from sidecar.core.outcome import PatientNotFound
from sidecar.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
FHIR = "application/fhir+json"


class FakeFhir:
    """Answers what each consumer asks; remembers (method, path) of every request."""

    def __init__(self, httpserver) -> None:
        self.server = httpserver
        self.stored: dict[str, dict] = {}
        httpserver.expect_request("/fhir/metadata").respond_with_json(
            {"resourceType": "CapabilityStatement", "status": "active"}
        )
        httpserver.expect_request(re.compile(r"^/fhir/.*")).respond_with_handler(self.answer)

    def answer(self, request: Request) -> Response:
        path = request.path.removeprefix("/fhir/")
        if request.method == "PUT":
            resource = json.loads(request.data)
            if resource["resourceType"] == "Subscription":
                resource["status"] = "active"
            self.stored[path] = resource
            return Response(json.dumps(resource), content_type=FHIR)
        if path in self.stored:
            return Response(json.dumps(self.stored[path]), content_type=FHIR)
        if "/" not in path:  # a search
            return Response(
                json.dumps({"resourceType": "Bundle", "type": "searchset"}), content_type=FHIR
            )
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "not-found"}],
        }
        return Response(json.dumps(outcome), status=404, content_type=FHIR)

    def requests(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r, _ in self.server.log]


@pytest.fixture
def configured(httpserver, tmp_path):
    fake = FakeFhir(httpserver)
    config = tmp_path / "sidecar.toml"
    config.write_text(
        f'[fhir]\nbase_url = "{httpserver.url_for("/fhir")}"\n'
        "timeout_seconds = 7\n"
        "[sync]\nregistration_check_seconds = 0.2\n"
        "activation_timeout_seconds = 2\n"
        '[pacs.main]\nurl = "http://127.0.0.1:9/dicom-web"\npatient_identifiers = "urn:a"\n'
    )
    environ = {
        "SIDECAR_CONFIG": str(config),
        "SIDECAR_DATA_DIR": str(tmp_path / "data"),
        "SIDECAR_RELAY_SECRET": "relay-secret-value-0123",
        "SIDECAR_NOTIFY_SECRET": "notify-secret-value-0123",
    }
    services = wiring.build(load_settings(environ))
    yield fake, services, environ
    services.close()


def test_every_consumer_shares_one_fhir_client(configured):
    _, services, _ = configured
    assert services.registrar.fhir is services.fhir is services.fetch.fhir
    assert services.settings.fhir.timeout_seconds == 7


def test_the_use_case_reaches_the_configured_server(configured):
    fake, services, _ = configured
    with pytest.raises(PatientNotFound):
        services.fetch(FetchRequest(patient_id="p1"))
    assert ("GET", "/fhir/Patient/p1") in fake.requests()


def test_registration_reaches_the_configured_server(configured):
    fake, services, _ = configured
    result = services.registrar.register_all(wait=True)
    assert result["subscription"]["status"] == "active"
    assert ("PUT", "/fhir/Subscription/dicom-fhir-sidecar-patient") in fake.requests()
    assert ("PUT", "/fhir/OperationDefinition/fetch-imaging") in fake.requests()
    assert ("PUT", "/fhir/OperationDefinition/imaging-sync-status") in fake.requests()


def test_the_watchdog_reaches_the_configured_server(configured):
    fake, services, _ = configured
    stop = threading.Event()
    watcher = threading.Thread(target=services.registrar.watch, args=(stop,), daemon=True)
    watcher.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            reads = fake.requests().count(("GET", "/fhir/Subscription/dicom-fhir-sidecar-patient"))
            if reads >= 3:  # registration, then the watchdog's checks
                break
            stop.wait(0.1)
        assert reads >= 3
    finally:
        stop.set()
        watcher.join(5)


def test_healthz_reaches_the_configured_server(configured):
    fake, services, _ = configured
    body = wiring.web_app(services).test_client().get("/healthz").get_json()
    assert body["checks"]["fhir"]["status"] == "ok"
    assert ("GET", "/fhir/metadata") in fake.requests()


def test_check_reaches_the_configured_server(configured):
    fake, _, environ = configured
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "check"],
        env={**env, **environ},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert "fhir: ok" in done.stdout, done.stdout + done.stderr
    assert fake.server.url_for("/fhir") in done.stdout
    assert ("GET", "/fhir/metadata") in fake.requests()
