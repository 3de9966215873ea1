"""The seeder creates the demo Patient only once the sidecar's Subscription is active, and
reaches the FHIR server with the sidecar's own credentials (the Docker demo's HAPI enforces
SMART tokens)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sidecar.adapters.http import ClientCredentials
from sidecar.samples.__main__ import _fhir_session, _wait_until_active

#: the Authorization header of each request the stand-in received
authorizations: list[str | None] = []


@pytest.fixture
def fhir() -> Iterator[tuple[str, list[str]]]:
    """A loopback FHIR stand-in: Subscription/sub is missing, requested, then active."""
    answers = ["missing", "requested", "requested", "active"]
    seen: list[str] = []
    authorizations.clear()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.path)
            authorizations.append(self.headers.get("Authorization"))
            state = answers.pop(0) if len(answers) > 1 else answers[0]
            if state == "missing":
                self.send_response(404)
                self.end_headers()
                return
            body = json.dumps({"resourceType": "Subscription", "status": state}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fhir", seen
    finally:
        server.shutdown()
        server.server_close()


def test_waits_through_missing_and_requested_until_active(fhir) -> None:
    base, seen = fhir
    assert _wait_until_active(base, "sub", timeout=10, interval=0.01)
    assert seen == ["/fhir/Subscription/sub"] * 4


def test_gives_up_after_the_timeout(fhir, capsys) -> None:
    base, _seen = fhir
    assert not _wait_until_active(base, "sub", timeout=0, interval=0.01)
    assert "Subscription/sub is missing" in capsys.readouterr().err


@pytest.fixture
def sidecar_env(monkeypatch) -> pytest.MonkeyPatch:
    """Only the variables a test sets: the seeder reads the sidecar's settings."""
    for name in list(os.environ):
        if name.startswith("SIDECAR_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_the_seeder_asks_with_the_sidecars_fhir_credentials(fhir, sidecar_env) -> None:
    base, _seen = fhir
    sidecar_env.setenv("SIDECAR_FHIR_AUTH", "bearer")
    sidecar_env.setenv("SIDECAR_FHIR_TOKEN", "a-static-token-for-the-test")
    assert _wait_until_active(base, "sub", timeout=10, interval=0.01, session=_fhir_session())
    assert authorizations == ["Bearer a-static-token-for-the-test"] * 4


def test_client_credentials_give_the_seeder_a_renewing_token(sidecar_env) -> None:
    """As the compose seeder is configured: the sidecar's client at Keycloak (system/*.cruds)."""
    sidecar_env.setenv("SIDECAR_FHIR_AUTH", "oauth2")
    sidecar_env.setenv("SIDECAR_FHIR_TOKEN_URL", "http://keycloak:8080/realms/r/token")
    sidecar_env.setenv("SIDECAR_FHIR_CLIENT_ID", "dicom-fhir-sidecar")
    sidecar_env.setenv("SIDECAR_FHIR_CLIENT_SECRET", "a-client-secret-for-the-test")
    sidecar_env.setenv("SIDECAR_FHIR_SCOPE", "system/*.cruds")
    assert isinstance(_fhir_session().auth, ClientCredentials)


def test_without_credentials_the_seeder_asks_anonymously(sidecar_env) -> None:
    assert _fhir_session().auth is None
