"""The ``$fetch-imaging`` operation on Patient (instance and type level)."""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, current_app, request

from sidecar.fetch_params import parameters_from_resource, parse_fetch_parameters
from sidecar.outcome import BadRequest, FetchError
from sidecar.web.auth import check_caller

log = logging.getLogger(__name__)
bp = Blueprint("operation", __name__)
FHIR_JSON = "application/fhir+json"


def fhir_response(body: dict, status: int = 200) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False),
        status=status,
        content_type=f"{FHIR_JSON}; charset=utf-8",
    )


def _pairs() -> list[tuple[str, str]]:
    pairs = list(request.args.items(multi=True))
    if request.method == "POST" and request.get_data():
        mimetype = request.mimetype or ""
        if mimetype == "application/x-www-form-urlencoded":
            pairs += list(request.form.items(multi=True))
        elif mimetype in (FHIR_JSON, "application/json"):
            try:
                body = json.loads(request.get_data())
            except ValueError:
                raise BadRequest("the request body is not JSON") from None
            pairs += parameters_from_resource(body)
        else:
            raise BadRequest(f"unsupported content type {mimetype!r}; send {FHIR_JSON}")
    return pairs


def _run(patient_id: str | None) -> Response:
    settings = current_app.config["SIDECAR_SETTINGS"]
    try:
        check_caller(request.headers, settings)
        fetch_request = parse_fetch_parameters(_pairs(), patient_id=patient_id)
        result = current_app.config["SIDECAR_FETCH"](fetch_request)
    except FetchError as exc:
        log.info(
            "fetch refused",
            extra={"patient_id": patient_id, "status": exc.status, "reason": exc.diagnostics},
        )
        response = fhir_response(exc.outcome(), exc.status)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="dicom-fhir-sidecar"'
        return response
    return fhir_response(result.bundle(settings.fhir_base_url))


@bp.route("/fhir/Patient/<patient_id>/$fetch-imaging", methods=["GET", "POST"])
def instance_level(patient_id: str) -> Response:
    return _run(patient_id)


@bp.route("/fhir/Patient/$fetch-imaging", methods=["GET", "POST"])
def type_level() -> Response:
    return _run(None)
