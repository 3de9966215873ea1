"""The ``$fetch-imaging`` operation on Patient (instance and type level).

Who calls (docs/audit.md): HAPI's provider relays the caller's own token in
``X-Caller-Authorization`` beside the relay secret (``X-Sidecar-Secret``); a direct caller
sends a static bearer token (``SIDECAR_BEARER_TOKENS``) or, with ``SIDECAR_AUTH_ISSUER`` set,
its own token in ``Authorization: Bearer``. A user token becomes the request's ``caller``
(the use case then lets the FHIR server decide whether it may read the Patient) and the
agent of the AuditEvent every call records: ``fetch_event`` with the answer's status, or
``refusal_event`` for a refused credential or a Patient the caller may not read.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from urllib.parse import parse_qsl

from flask import Blueprint, Response, g, request

from sidecar.core import audit
from sidecar.core.caller import Caller
from sidecar.core.credentials import SECRET_HEADER, AcceptedCredentials, check_caller
from sidecar.core.fetch_params import parse_fetch_parameters
from sidecar.core.outcome import (
    BadRequest,
    FetchError,
    Forbidden,
    PatientNotFound,
    PatientNotVisible,
    WritesNeedPost,
)
from sidecar.core.parameters_body import parameters_from_resource, parse_json_body
from sidecar.entry.web.context import current_services
from sidecar.entry.web.responses import FHIR_JSON, fhir_response, read_body
from sidecar.services import Services

log = logging.getLogger(__name__)
bp = Blueprint("operation", __name__)
MAX_PARAMETERS_BYTES = 64 * 1024  # a Parameters body of this operation is a few hundred bytes
#: the header in which HAPI's provider relays its caller's ``Authorization`` value
CALLER_HEADER = "X-Caller-Authorization"


def _pairs() -> list[tuple[str, str]]:
    pairs = list(request.args.items(multi=True))
    body = read_body(MAX_PARAMETERS_BYTES) if request.method == "POST" else b""
    if body:
        mimetype = request.mimetype or ""
        if mimetype == "application/x-www-form-urlencoded":
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest("the form body is not UTF-8") from None
            pairs += parse_qsl(text, keep_blank_values=True)
        elif mimetype in (FHIR_JSON, "application/json"):
            pairs += parameters_from_resource(parse_json_body(body))
        else:
            raise BadRequest(f"unsupported content type {mimetype!r}; send {FHIR_JSON}")
    return pairs


def _authenticate(services: Services, accepted: AcceptedCredentials) -> Caller | None:
    """Check the credentials; the caller of a user token, None without one (HAPI's relay
    for a caller without a token, a static bearer token, an anonymous closed network)."""
    headers = request.headers
    tokens = services.tokens
    if tokens is None:
        check_caller(headers, accepted)
        return None
    if headers.get(SECRET_HEADER) is not None:  # HAPI's relay: its caller's token beside it
        check_caller(headers, accepted)
        relayed = headers.get(CALLER_HEADER)
        return tokens.caller(relayed) if relayed else None
    try:
        check_caller(headers, accepted)  # a static bearer token, or anonymous
        return None
    except Forbidden:  # not a static token: a token of the authorization server, or 401
        return tokens.caller(headers.get("Authorization"))


def _run(patient_id: str | None) -> Response:
    services = current_services()
    settings = services.settings
    accepted = AcceptedCredentials.of(
        settings.relay_secret, settings.bearer_tokens, anonymous=settings.allow_anonymous
    )
    caller: Caller | None = None
    authenticated = False
    recorded: list[tuple[str, str]] = []  # the parameters as the audit may show them
    try:
        if request.method not in ("GET", "POST"):  # HEAD and OPTIONS too: Flask adds them
            raise WritesNeedPost(f"{request.method} is not supported: invoke it with POST")
        caller = _authenticate(services, accepted)
        authenticated = True
        pairs = _pairs()
        recorded = [(name, "") for name, _ in pairs]  # names only until the values are checked
        fetch_request = parse_fetch_parameters(pairs, patient_id=patient_id)
        recorded = pairs
        if request.method == "GET" and fetch_request.persist:
            raise WritesNeedPost(
                "$fetch-imaging writes ImagingStudies (affectsState): invoke it with POST, "
                "or with GET and persist=false to read without writing"
            )
        result = services.fetch(replace(fetch_request, caller=caller))
    except FetchError as exc:
        log.info(
            "fetch refused",
            extra={"patient_id": patient_id, "status": exc.status, "code": exc.code},
        )
        _record_failure(services, caller, patient_id, recorded, exc, authenticated)
        response = fhir_response(exc.outcome(), exc.status)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="dicom-fhir-sidecar"'
        if exc.status == 405:
            response.headers["Allow"] = "POST"
        return response
    _record(
        services,
        audit.fetch_event(
            caller,
            str(result.patient.get("id") or patient_id or "") or None,
            _with_patient(recorded, patient_id),
            200,
            [s["id"] for s in result.studies],
            audit.now(),
            **_request_facts(services),
        ),
    )
    return fhir_response(result.bundle(settings.fhir.base_url))


def _record_failure(
    services: Services,
    caller: Caller | None,
    patient_id: str | None,
    recorded: list[tuple[str, str]],
    exc: FetchError,
    authenticated: bool,
) -> None:
    """A refusal (the Patient named when known) for what was refused before or by the
    credential check, or because the caller may not read the Patient; any other failure:
    the call with its status."""
    at = audit.now()
    if not authenticated or isinstance(exc, PatientNotVisible):
        level = "instance" if patient_id else "type"
        known = exc.patient_id if isinstance(exc, PatientNotVisible) else patient_id
        event = audit.refusal_event(
            caller,
            f"$fetch-imaging {level} level",
            exc.status,
            at,
            patient_id=known,
            **_request_facts(services),
        )
    else:
        # a Patient that does not exist is named in the query, not referenced
        known = None if isinstance(exc, PatientNotFound) else patient_id
        event = audit.fetch_event(
            caller,
            known,
            _with_patient(recorded, patient_id),
            exc.status,
            [],
            at,
            **_request_facts(services),
        )
    _record(services, event)


def _with_patient(pairs: list[tuple[str, str]], patient_id: str | None) -> list[tuple[str, str]]:
    """An instance-level call's Patient in the recorded query, as the type level's
    ``patient`` parameter (a reference, not an identifier)."""
    return [("patient", patient_id), *pairs] if patient_id else pairs


def _request_facts(services: Services) -> dict:
    return {
        "address": request.remote_addr,
        "request_id": getattr(g, "request_id", None),
        "observer": services.observer,
    }


def _record(services: Services, event: dict) -> None:
    services.audit.record(event)  # never raises: the AuditSink contract


METHODS = ["GET", "POST", "HEAD", "OPTIONS"]  # HEAD/OPTIONS answered 405 by _run


@bp.route(
    "/fhir/Patient/<patient_id>/$fetch-imaging", methods=METHODS, provide_automatic_options=False
)
def instance_level(patient_id: str) -> Response:
    return _run(patient_id)


@bp.route("/fhir/Patient/$fetch-imaging", methods=METHODS, provide_automatic_options=False)
def type_level() -> Response:
    return _run(None)
