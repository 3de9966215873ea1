"""gunicorn's threaded worker, answering the requests it refuses itself as FHIR.

gunicorn rejects some requests before the app sees them (a request line over
``limit_request_line``: 414; headers over ``limit_request_field_size`` or
``limit_request_fields``: 431; a malformed request: 400) and writes an HTML page. Every
answer of the sidecar is an OperationOutcome (FHIR R4 http.html#errors), so this worker
writes one instead, with the same status.
"""

from __future__ import annotations

import json
from typing import Any

from gunicorn import util
from gunicorn.http.errors import (
    ConfigurationProblem,
    InvalidResponseHeader,
    InvalidResponseHeaderName,
    LimitRequestHeaders,
    LimitRequestLine,
    ParseException,
)
from gunicorn.workers.gthread import ThreadWorker

FHIR_JSON = "application/fhir+json; charset=utf-8"


def refusal(exc: BaseException) -> tuple[int, str, str, str]:
    """(status, reason, issue code, diagnostics) for a request gunicorn could not take."""
    if isinstance(exc, LimitRequestLine):
        return 414, "URI Too Long", "too-long", "the request line (URL) is too long"
    if isinstance(exc, LimitRequestHeaders):
        return 431, "Request Header Fields Too Large", "too-long", "the headers are too large"
    app_fault = (InvalidResponseHeader, InvalidResponseHeaderName, ConfigurationProblem)
    if isinstance(exc, ParseException) and not isinstance(exc, app_fault):
        return 400, "Bad Request", "structure", "the request is not valid HTTP/1.1"
    return 500, "Internal Server Error", "exception", "internal error"


class FhirThreadWorker(ThreadWorker):
    """``gthread`` with OperationOutcome error pages (``worker_class`` of ``serve``)."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        status, reason, code, diagnostics = refusal(exc)
        if status == 500:
            self.log.exception("error handling a request")
        else:
            self.log.warning("refused a request: %s", type(exc).__name__)
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
        }
        body = json.dumps(outcome).encode("utf-8")
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: {FHIR_JSON}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        try:
            util.write_nonblock(client, head + body)
        except Exception:  # noqa: BLE001 - the client may be gone already
            self.log.debug("could not send the error answer")
