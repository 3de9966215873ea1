"""The seeder creates the demo Patient only once the sidecar's Subscription is active."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sidecar.samples.__main__ import _wait_until_active


@pytest.fixture
def fhir() -> Iterator[tuple[str, list[str]]]:
    """A loopback FHIR stand-in: Subscription/sub is missing, requested, then active."""
    answers = ["missing", "requested", "requested", "active"]
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.path)
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
