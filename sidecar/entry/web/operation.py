"""The ``$fetch-imaging`` operation on Patient (instance and type level)."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from flask import Blueprint, Response, request

from sidecar.core.credentials import AcceptedCredentials, check_caller
from sidecar.core.fetch_params import parse_fetch_parameters
from sidecar.core.outcome import BadRequest, FetchError, WritesNeedPost
from sidecar.core.parameters_body import parameters_from_resource, parse_json_body
from sidecar.entry.web.context import current_services
from sidecar.entry.web.responses import FHIR_JSON, fhir_response, read_body

log = logging.getLogger(__name__)
bp = Blueprint("operation", __name__)
MAX_PARAMETERS_BYTES = 64 * 1024  # a Parameters body of this operation is a few hundred bytes


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


def _run(patient_id: str | None) -> Response:
    services = current_services()
    settings = services.settings
    accepted = AcceptedCredentials.of(
        settings.relay_secret, settings.bearer_tokens, anonymous=settings.allow_anonymous
    )
    try:
        if request.method not in ("GET", "POST"):  # HEAD and OPTIONS too: Flask adds them
            raise WritesNeedPost(f"{request.method} is not supported: invoke it with POST")
        check_caller(request.headers, accepted)
        fetch_request = parse_fetch_parameters(_pairs(), patient_id=patient_id)
        if request.method == "GET" and fetch_request.persist:
            raise WritesNeedPost(
                "$fetch-imaging writes ImagingStudies (affectsState): invoke it with POST, "
                "or with GET and persist=false to read without writing"
            )
        result = services.fetch(fetch_request)
    except FetchError as exc:
        log.info(
            "fetch refused",
            extra={"patient_id": patient_id, "status": exc.status, "code": exc.code},
        )
        response = fhir_response(exc.outcome(), exc.status)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="dicom-fhir-sidecar"'
        if exc.status == 405:
            response.headers["Allow"] = "POST"
        return response
    return fhir_response(result.bundle(settings.fhir.base_url))


METHODS = ["GET", "POST", "HEAD", "OPTIONS"]  # HEAD/OPTIONS answered 405 by _run


@bp.route(
    "/fhir/Patient/<patient_id>/$fetch-imaging", methods=METHODS, provide_automatic_options=False
)
def instance_level(patient_id: str) -> Response:
    return _run(patient_id)


@bp.route("/fhir/Patient/$fetch-imaging", methods=METHODS, provide_automatic_options=False)
def type_level() -> Response:
    return _run(None)
