"""The REST-hook endpoint HAPI delivers Patient notifications to.

HAPI's rest-hook with payload ``application/fhir+json`` sends a create/update as
``PUT {endpoint}/Patient/{id}`` with the resource as body, and (with the
send-delete-messages extension) a delete as ``DELETE {endpoint}/Patient/{id}``. The handler
checks the notify secret in constant time, validates the payload, records the notification
durably and answers; it never talks to the PACS (HAPI gives up on a delivery after about a
minute of retries, so the work must be queued, not done inline).
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from sidecar.core.credentials import SECRET_HEADER, AcceptedCredentials, check_caller
from sidecar.core.notification_rules import (
    MAX_PAYLOAD_BYTES,
    InvalidNotification,
    parse_patient_payload,
    validate_patient_id,
)
from sidecar.core.outcome import FetchError
from sidecar.entry.web.context import current_services
from sidecar.entry.web.responses import outcome_response, read_body
from subscription_handlers.usecases.patient_sync import fingerprint_for

log = logging.getLogger(__name__)

bp = Blueprint("notify", __name__)


def _authorised() -> Response | None:
    """The notify secret (``X-Sidecar-Secret`` or ``Authorization: Bearer``), nothing else."""
    secrets = current_services().settings.notify_secret
    if not secrets:
        return outcome_response(503, "security", "SIDECAR_NOTIFY_SECRET is not configured")
    try:
        check_caller(request.headers, AcceptedCredentials.of(secrets, secrets))
    except FetchError as exc:
        headers = {"WWW-Authenticate": 'Bearer realm="dicom-fhir-sidecar notify"'}
        text = f"{exc.diagnostics} (the notify secret, in {SECRET_HEADER})"
        return outcome_response(
            exc.status, exc.code, text, **(headers if exc.status == 401 else {})
        )
    return None


def _submit(patient_id: str, fingerprint: str | None, reason: str) -> Response:
    try:
        decision = current_services().queue.submit(patient_id, fingerprint, reason=reason)
    except Exception:  # noqa: BLE001 - storage down: HAPI must retry the delivery
        log.exception("could not record the notification", extra={"patient_id": patient_id})
        return outcome_response(503, "transient", "the sync queue is unavailable; retry")
    return outcome_response(
        200, "informational", f"Patient/{patient_id}: {decision}", severity="information"
    )


@bp.put("/notify/Patient/<patient_id>")
def patient_changed(patient_id: str) -> Response:
    denied = _authorised()
    if denied is not None:
        return denied
    try:
        patient = parse_patient_payload(
            patient_id, read_body(MAX_PAYLOAD_BYTES), request.content_type
        )
    except InvalidNotification as exc:
        return outcome_response(exc.status, "invalid", str(exc))
    except FetchError as exc:  # the body is larger than a Patient may be
        return outcome_response(exc.status, exc.code, exc.diagnostics)
    return _submit(patient_id, fingerprint_for(current_services().fetch, patient), "update")


@bp.delete("/notify/Patient/<patient_id>")
def patient_deleted(patient_id: str) -> Response:
    denied = _authorised()
    if denied is not None:
        return denied
    try:
        validate_patient_id(patient_id)
    except InvalidNotification as exc:
        return outcome_response(exc.status, "invalid", str(exc))
    return _submit(patient_id, None, "delete")


@bp.route("/notify", methods=["POST", "PUT"])
@bp.route("/notify/<path:rest>", methods=["POST", "PUT", "DELETE"])
def unsupported(rest: str = "") -> Response:
    denied = _authorised()
    if denied is not None:
        return denied
    return outcome_response(
        400,
        "not-supported",
        "only Patient notifications with payload application/fhir+json are handled "
        "(PUT/DELETE /notify/Patient/{id})",
    )
