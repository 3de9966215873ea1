"""The REST-hook endpoint HAPI delivers Patient notifications to.

HAPI's rest-hook with payload ``application/fhir+json`` sends a create/update as
``PUT {endpoint}/Patient/{id}`` with the resource as body, and (with the
send-delete-messages extension) a delete as ``DELETE {endpoint}/Patient/{id}``. The handler
checks the shared secret in constant time, validates the payload, records the notification
durably and answers; it never talks to the PACS (HAPI gives up on a delivery after about a
minute of retries, so the work must be queued, not done inline).
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request

from subscription_handlers.patient_rules import (
    InvalidNotification,
    parse_patient_payload,
    relevant_fingerprint,
    validate_patient_id,
)
from subscription_handlers.settings import SyncSettings

log = logging.getLogger(__name__)

bp = Blueprint("notify", __name__)
SECRET_HEADER = "X-Sidecar-Secret"
EXTENSION = "sidecar_sync"


def init_app(app: Flask, settings: SyncSettings | None = None) -> None:
    """Register ``/notify`` and the sync section of ``/healthz`` on the sidecar's app."""
    app.extensions[EXTENSION] = settings or SyncSettings.from_env()
    app.register_blueprint(bp)
    checks = app.extensions.setdefault("sidecar_health_checks", {})
    from subscription_handlers.health import sync_health

    checks["sync"] = sync_health


def secret_matches(headers: Any, expected: str | None) -> bool:
    """``X-Sidecar-Secret: <secret>`` or ``Authorization: Bearer <secret>``, constant time."""
    if not expected:
        return False
    want = expected.encode("utf-8")
    given = headers.get(SECRET_HEADER)
    scheme, _, token = (headers.get("Authorization") or "").partition(" ")
    candidates = [given or "", token.strip() if scheme.lower() == "bearer" else ""]
    # compare both, always, so the timing tells nothing about which header was right
    results = [hmac.compare_digest(c.encode("utf-8"), want) for c in candidates]
    return any(results)


def _outcome(status: int, severity: str, code: str, text: str, **headers: str) -> Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": text}],
    }
    response = Response(json.dumps(body), status=status, content_type="application/fhir+json")
    response.headers.update(headers)
    return response


def _settings() -> SyncSettings:
    return current_app.extensions[EXTENSION]


def _queue():
    from subscription_handlers.queue import get_queue

    return get_queue(_settings())


def _authorised() -> Response | None:
    settings = _settings()
    if not settings.shared_secret:
        return _outcome(503, "error", "security", "SIDECAR_SHARED_SECRET is not configured")
    if not secret_matches(request.headers, settings.shared_secret):
        return _outcome(
            401,
            "error",
            "login",
            f"the notification must carry the shared secret ({SECRET_HEADER})",
            **{"WWW-Authenticate": 'Bearer realm="dicom-fhir-sidecar notify"'},
        )
    return None


def _fingerprint(patient: dict[str, Any]) -> str:
    fetch = current_app.config.get("SIDECAR_FETCH")
    from subscription_handlers.sync import identifier_keys

    keys = identifier_keys(fetch, patient) if fetch is not None else None
    return relevant_fingerprint(patient, keys)


def _submit(patient_id: str, fingerprint: str | None, reason: str) -> Response:
    try:
        decision = _queue().submit(patient_id, fingerprint, reason=reason)
    except Exception:  # noqa: BLE001 - storage down: HAPI must retry the delivery
        log.exception("could not record the notification", extra={"patient_id": patient_id})
        return _outcome(503, "error", "transient", "the sync queue is unavailable; retry")
    return _outcome(200, "information", "informational", f"Patient/{patient_id}: {decision}")


@bp.put("/notify/Patient/<patient_id>")
def patient_changed(patient_id: str) -> Response:
    denied = _authorised()
    if denied is not None:
        return denied
    try:
        patient = parse_patient_payload(
            patient_id, request.get_data(cache=False), request.content_type
        )
    except InvalidNotification as exc:
        return _outcome(exc.status, "error", "invalid", str(exc))
    return _submit(patient_id, _fingerprint(patient), "update")


@bp.delete("/notify/Patient/<patient_id>")
def patient_deleted(patient_id: str) -> Response:
    denied = _authorised()
    if denied is not None:
        return denied
    try:
        validate_patient_id(patient_id)
    except InvalidNotification as exc:
        return _outcome(exc.status, "error", "invalid", str(exc))
    return _submit(patient_id, None, "delete")


@bp.route("/notify", methods=["POST", "PUT"])
@bp.route("/notify/<path:rest>", methods=["POST", "PUT", "DELETE"])
def unsupported(rest: str = "") -> Response:
    denied = _authorised()
    if denied is not None:
        return denied
    return _outcome(
        400,
        "error",
        "not-supported",
        "only Patient notifications with payload application/fhir+json are handled "
        "(PUT/DELETE /notify/Patient/{id})",
    )
