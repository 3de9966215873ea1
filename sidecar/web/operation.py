"""The ``$fetch-imaging`` operation on Patient (instance and type level)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from sidecar.auth import AcceptedCredentials, check_caller
from sidecar.fetch_params import parse_fetch_parameters
from sidecar.outcome import BadRequest, FetchError, PayloadTooLarge, WritesNeedPost
from sidecar.parameters_body import parameters_from_resource, parse_json_body
from sidecar.web.context import current_services
from sidecar.web.responses import FHIR_JSON, fhir_response

log = logging.getLogger(__name__)
bp = Blueprint("operation", __name__)
MAX_PARAMETERS_BYTES = 64 * 1024  # a Parameters body of this operation is a few hundred bytes


def _pairs() -> list[tuple[str, str]]:
    pairs = list(request.args.items(multi=True))
    if (request.content_length or 0) > MAX_PARAMETERS_BYTES:
        raise PayloadTooLarge(f"the request body is larger than {MAX_PARAMETERS_BYTES} bytes")
    if request.method == "POST" and request.get_data():
        mimetype = request.mimetype or ""
        if mimetype == "application/x-www-form-urlencoded":
            pairs += list(request.form.items(multi=True))
        elif mimetype in (FHIR_JSON, "application/json"):
            pairs += parameters_from_resource(parse_json_body(request.get_data()))
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
            extra={"patient_id": patient_id, "status": exc.status, "reason": exc.diagnostics},
        )
        response = fhir_response(exc.outcome(), exc.status)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="dicom-fhir-sidecar"'
        if exc.status == 405:
            response.headers["Allow"] = "POST"
        return response
    return fhir_response(result.bundle(settings.fhir.base_url))


@bp.route("/fhir/Patient/<patient_id>/$fetch-imaging", methods=["GET", "POST"])
def instance_level(patient_id: str) -> Response:
    return _run(patient_id)


@bp.route("/fhir/Patient/$fetch-imaging", methods=["GET", "POST"])
def type_level() -> Response:
    return _run(None)
