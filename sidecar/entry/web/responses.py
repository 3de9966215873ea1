"""FHIR JSON responses: every answer of the sidecar's HTTP API is a FHIR resource."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, request

from sidecar.core.outcome import PayloadTooLarge, issue, operation_outcome

FHIR_JSON = "application/fhir+json"


def fhir_response(body: dict[str, Any], status: int = 200, **headers: str) -> Response:
    """``body`` as ``application/fhir+json; charset=utf-8`` with this status."""
    response = Response(
        json.dumps(body, ensure_ascii=False),
        status=status,
        content_type=f"{FHIR_JSON}; charset=utf-8",
    )
    response.headers.update(headers)
    return response


def read_body(limit: int) -> bytes:
    """The request body, at most ``limit`` bytes, whether a Content-Length announced it or it
    came chunked; more is a 413 (PayloadTooLarge) and is not read."""
    if (request.content_length or 0) > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    return data


def outcome_response(
    status: int, code: str, diagnostics: str, *, severity: str = "error", **headers: str
) -> Response:
    """An OperationOutcome with one issue, answered with ``status``."""
    body = operation_outcome([issue(severity, code, diagnostics)])
    return fhir_response(body, status, **headers)
