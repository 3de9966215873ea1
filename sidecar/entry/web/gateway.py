"""``/dicomweb/<pacs>/...``: the imaging gateway's HTTP face (DICOM PS3.18 WADO-RS, QIDO-RS).

Every request needs a bearer token of the authorization server (the one the FHIR server
accepts): none, or one that is not valid, is a 401 with ``WWW-Authenticate`` (RFC 6750 3);
a resource the caller may not see is a 404 that does not say whether it exists. Answers
stream from the PACS (``Accept`` and ``Range`` pass through); metadata and searches come
back with their URLs pointing here. ``Endpoint.address`` of each PACS is this URL
(SMART Imaging Access: ``requires-access-token`` true).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response, request, stream_with_context

from sidecar.core.dicomweb_paths import NotAResource, parse, render_query, search_query
from sidecar.core.outcome import FetchError
from sidecar.entry.web.context import current_services
from sidecar.entry.web.responses import outcome_response

log = logging.getLogger(__name__)
bp = Blueprint("gateway", __name__)

REALM = 'Bearer realm="dicom-fhir-sidecar imaging"'
DICOM_JSON = "application/dicom+json"
#: headers of a PACS answer that go on to the client (the rest is the PACS's business)
PASSED_ON = (
    "Content-Type",
    "Content-Length",
    "Content-Range",
    "Accept-Ranges",
    "ETag",
    "Last-Modified",
    "Content-Location",
)


def _denied(exc: FetchError) -> Response:
    headers: dict[str, str] = {}
    if exc.status == 401:
        error = getattr(exc, "error", None)
        headers["WWW-Authenticate"] = f'{REALM}, error="{error}"' if error else REALM
    return outcome_response(exc.status, exc.code, exc.diagnostics, **headers)


@bp.route("/dicomweb/<pacs>/<path:rest>", methods=["GET", "HEAD"])
def dicomweb(pacs: str, rest: str) -> Response:
    services = current_services()
    gateway, tokens = services.gateway, services.tokens
    if gateway is None or tokens is None:
        return outcome_response(
            503, "not-supported", "the imaging gateway needs SIDECAR_AUTH_ISSUER and _AUDIENCE"
        )
    try:
        caller = tokens.caller(request.headers.get("Authorization"))
    except FetchError as exc:
        return _denied(exc)
    try:
        if not gateway.knows(pacs):
            raise NotAResource("unknown PACS")
        target = parse(rest)
        if target.search:
            rows = gateway.search(caller, pacs, target, search_query(_query()))
            return _json(rows)
        if target.resource == "metadata":
            return _json(gateway.metadata(caller, pacs, target))
        query = render_query(_query()) if target.resource in ("rendered", "thumbnail") else ""
        answer = gateway.retrieve(caller, pacs, target, query, request.headers)
    except NotAResource:
        return outcome_response(404, "not-found", "no such resource for this caller")
    except FetchError as exc:
        return _denied(exc)
    return _stream(answer)


def _query() -> str:
    return request.query_string.decode("latin-1")


def _json(rows: list[dict[str, Any]]) -> Response:
    response = Response(json.dumps(rows), content_type=DICOM_JSON)
    return _private(response)


def _stream(answer: Any) -> Response:
    headers = {k: v for k, v in answer.headers.items() if k in PASSED_ON}
    if request.method == "HEAD":
        answer.close()
        return _private(Response(status=answer.status, headers=headers))
    body = stream_with_context(answer.chunks())
    return _private(Response(body, status=answer.status, headers=headers, direct_passthrough=True))


def _private(response: Response) -> Response:
    """Answers differ by caller: no shared cache may keep one for another."""
    response.headers["Cache-Control"] = "private, no-cache"
    response.headers["Vary"] = "Authorization"
    return response
