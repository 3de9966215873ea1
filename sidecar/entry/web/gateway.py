"""``/dicomweb/<pacs>/...``: the imaging gateway's HTTP face (DICOM PS3.18 WADO-RS, QIDO-RS).

Every request needs a bearer token of the authorization server (the one the FHIR server
accepts): none, or one that is not valid, is a 401 with ``WWW-Authenticate`` (RFC 6750 3);
a resource the caller may not see is a 404 that does not say whether it exists. Answers
stream from the PACS (``Accept`` and ``Range`` pass through); metadata and searches come
back with their URLs pointing here. ``Endpoint.address`` of each PACS is this URL
(SMART Imaging Access: ``requires-access-token`` true).

Every request is on the audit trail (docs/audit.md): a refused token or path as a
refusal event, the rest through ``Services.retrievals`` (one AuditEvent per token, study,
PACS, outcome and kind, however many frames are read).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response, request, stream_with_context

from sidecar.core import audit
from sidecar.core.caller import Caller
from sidecar.core.dicomweb_paths import NotAResource, Target, parse, render_query, search_query
from sidecar.core.outcome import FetchError
from sidecar.core.qido import STUDY_INSTANCE_UID, first_value
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
    return _private(outcome_response(exc.status, exc.code, exc.diagnostics, **headers))


@bp.route("/dicomweb/<pacs>/<path:rest>", methods=["GET", "HEAD"], provide_automatic_options=False)
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
        _refused(None, "DICOMweb request", exc.status)
        return _denied(exc)
    target: Target | None = None
    try:
        if not gateway.knows(pacs):
            raise NotAResource("unknown PACS")
        target = parse(rest)
        if target.search:
            rows = gateway.search(caller, pacs, target, search_query(_query()))
            _seen(caller, pacs, target, 200, rows)
            return _json(rows)
        if target.resource == "metadata":
            rows = gateway.metadata(caller, pacs, target)
            _seen(caller, pacs, target, 200)
            return _json(rows)
        query = render_query(_query()) if target.resource in ("rendered", "thumbnail") else ""
        answer = gateway.retrieve(caller, pacs, target, query, request.headers)
    except NotAResource:
        _refused(caller, "DICOMweb path that names no resource", 404)
        return _private(outcome_response(404, "not-found", "no such resource for this caller"))
    except FetchError as exc:
        if target is not None and target.study:
            _seen(caller, pacs, target, exc.status)
        else:
            _refused(caller, "DICOMweb request", exc.status)
        return _denied(exc)
    _seen(caller, pacs, target, answer.status)
    return _stream(answer)


def _seen(
    caller: Caller, pacs: str, target: Target, status: int, rows: list[dict] | None = None
) -> None:
    """The request on the audit trail, once per study it touched (a search: each study of
    its answer), with the study's Patient as the FHIR server showed it to the caller."""
    services = current_services()
    if services.retrievals is None or services.gateway is None:
        return
    try:
        uids = [target.study] if target.study else []
        uids += [u for r in rows or [] if (u := first_value(r, STUDY_INSTANCE_UID))]
        uids = list(dict.fromkeys(uids))
        # the decisions the request just made, cached: no new FHIR request
        access = services.gateway.access(caller, pacs, uids) if status < 400 else {}
        for uid in uids:
            patient_id = access[uid].patient_id if uid in access else None
            kind = "qido" if target.search else "wado"
            services.retrievals.seen(
                caller, patient_id, uid, pacs, status, kind, address=request.remote_addr
            )
    except Exception:  # noqa: BLE001 - the audit never fails a retrieval
        log.exception("gateway audit failed", extra={"pacs": pacs})


def _refused(caller: Caller | None, what: str, status: int) -> None:
    services = current_services()
    event = audit.refusal_event(
        caller,
        what,
        status,
        audit.now(),
        request.remote_addr,
        action="R",
        observer=services.observer,
    )
    services.audit.record(event)  # never raises: the AuditSink contract


def _query() -> str:
    return request.query_string.decode("latin-1")


def _json(rows: list[dict[str, Any]]) -> Response:
    response = Response(json.dumps(rows), content_type=DICOM_JSON)
    return _private(response)


def _stream(answer: Any) -> Response:
    if answer.status >= 400 and answer.status != 416:
        answer.close()  # the PACS's own error body (its paths, its product) stays here
        return _private(_pacs_error(answer.status))
    headers = {k: v for k, v in answer.headers.items() if k in PASSED_ON}
    if request.method == "HEAD":
        answer.close()
        response = Response(status=answer.status, headers=headers)
        # a streamed answer has no length the PACS told: say none rather than 0
        response.automatically_set_content_length = "Content-Length" in headers
        return _private(response)
    body = stream_with_context(answer.chunks())
    return _private(Response(body, status=answer.status, headers=headers, direct_passthrough=True))


def _pacs_error(status: int) -> Response:
    """An error of the PACS as our OperationOutcome: 404 and 406 keep their meaning for the
    client (no such frame; no such media type, PS3.18 8.7.4), others are the PACS failing."""
    if status == 404:
        return outcome_response(404, "not-found", "no such resource for this caller")
    if status == 406:
        return outcome_response(406, "not-supported", "the PACS cannot answer in that media type")
    if status < 500:
        return outcome_response(400, "invalid", f"the PACS refused the request (HTTP {status})")
    return outcome_response(502, "transient", f"the PACS failed (HTTP {status})")


def _private(response: Response) -> Response:
    """Answers differ by caller: no shared cache may keep one for another."""
    response.headers["Cache-Control"] = "private, no-cache"
    response.headers["Vary"] = "Authorization"
    return response
