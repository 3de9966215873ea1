"""The operator's HTTP API: ``/admin/api/...`` (JSON) and ``Patient/{id}/$imaging-sync-status``.

    GET  /admin/api/overview                        the queue, the triggers, pending syncs,
                                                    dead letters, identity conflicts
    POST /admin/api/dead-letters/{id}/retry         queue a dead letter again
    POST /admin/api/patients/{id}/resync            queue a sync of the Patient now
    GET  /admin/api/lookup?patient={id}             PACS and FHIR side by side, and why
    GET  /admin/api/lookup?study={StudyInstanceUID}
    GET|POST /fhir/Patient/{id}/$imaging-sync-status   the Patient lookup as FHIR R4 Parameters

Every request needs a bearer token of the authorization server (the one the FHIR server
accepts: ``Services.tokens``) whose holder has the realm role ``imaging-operator``
(:attr:`sidecar.core.caller.Caller.is_operator`): without one, or with one that is not
valid, 401 with ``WWW-Authenticate`` (RFC 6750 3); a valid one without the role, 403.
Errors are FHIR OperationOutcomes. Answers name Patients by id and studies by UID, never
an identifier value, a name or a birth date; each action is logged with the operator's
``sub``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from flask import Blueprint, Response, request

from sidecar.core.caller import Caller
from sidecar.core.fhir_values import is_fhir_id
from sidecar.core.outcome import BadRequest, FetchError, Forbidden, PatientNotFound
from sidecar.core.parameters_body import parse_json_body
from sidecar.core.sync_explanation import SyncRecord
from sidecar.core.sync_report import instant, sync_json, trigger_json
from sidecar.entry.web.context import current_services
from sidecar.entry.web.responses import fhir_response, outcome_response, read_body
from sidecar.usecases.health import trigger_report
from sidecar.usecases.sync_status import SyncStatus

log = logging.getLogger(__name__)
bp = Blueprint("admin_api", __name__)

REALM = 'Bearer realm="dicom-fhir-sidecar operator"'
LIST_LIMIT = 100  # rows per list on the overview (dicom-fhir jobs --limit for more)
MAX_PARAMETERS_BYTES = 16 * 1024


class NotConfigured(FetchError):
    """The sidecar has no authorization server to check operators' tokens against (503)."""

    status, code = 503, "not-supported"


def operator() -> Caller:
    """The caller of this request, if it is an operator; Unauthorized/Forbidden otherwise."""
    tokens = current_services().tokens
    if tokens is None:
        raise NotConfigured("the operator API needs SIDECAR_AUTH_ISSUER and SIDECAR_AUTH_AUDIENCE")
    caller = tokens.caller(request.headers.get("Authorization"))
    if not caller.is_operator:
        raise Forbidden("this account has no imaging-operator role")
    return caller


@bp.errorhandler(FetchError)
def _refused(exc: FetchError) -> Response:
    headers: dict[str, str] = {"Cache-Control": "no-store"}
    if exc.status == 401:
        error = getattr(exc, "error", None)
        headers["WWW-Authenticate"] = f'{REALM}, error="{error}"' if error else REALM
    return outcome_response(exc.status, exc.code, exc.diagnostics, **headers)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    response = Response(json.dumps(body), status=status, content_type="application/json")
    response.headers["Cache-Control"] = "no-store"  # the queue changes by the second
    return response


def _patient_id(value: str) -> str:
    if not is_fhir_id(value):
        raise BadRequest("not a FHIR Patient id ([A-Za-z0-9-.], at most 64 characters)")
    return value


def _audit(caller: Caller, action: str, **extra: Any) -> None:
    log.info("operator action", extra={"action": action, "operator": caller.subject, **extra})


@bp.get("/admin/api/overview")
def overview() -> Response:
    """Counts per state, each trigger, and the pending, dead and conflicting Patients."""
    operator()
    queue = current_services().queue
    now = time.time()

    def records(states: list) -> list[dict[str, Any]]:
        return [sync_json(SyncRecord.of(s, now)) for s in states]

    return _json(
        {
            "generatedAt": instant(now),
            "queue": queue.status(),
            "triggers": [trigger_json(n, s) for n, s in sorted(trigger_report(queue, now).items())],
            "pending": records(queue.pending(LIST_LIMIT)),
            "deadLetters": records(queue.dead_letters(LIST_LIMIT)),
            "conflicts": records(queue.conflicts(LIST_LIMIT)),
        }
    )


@bp.post("/admin/api/dead-letters/<patient_id>/retry")
def retry(patient_id: str) -> Response:
    """A dead letter (or a resolved conflict) back into the queue; 409 if it is neither."""
    caller = operator()
    patient_id = _patient_id(patient_id)
    revived = current_services().queue.retry_dead([patient_id])
    if not revived:
        return outcome_response(
            409, "conflict", f"Patient/{patient_id} is not a dead letter or a resolved conflict"
        )
    _audit(caller, "retry", patient_id=patient_id)
    return _json({"patient": f"Patient/{patient_id}", "decision": "queued"}, 202)


@bp.post("/admin/api/patients/<patient_id>/resync")
def resync(patient_id: str) -> Response:
    """A sync of this Patient now (trigger ``operator``): ``queued`` or ``coalesced``."""
    caller = operator()
    services = current_services()
    patient_id = _patient_id(patient_id)
    if services.fhir.read("Patient", patient_id) is None:
        raise PatientNotFound(f"Patient/{patient_id} is not on the FHIR server")
    decision = services.queue.submit(patient_id, None, reason="operator")
    _audit(caller, "resync", patient_id=patient_id, decision=decision)
    return _json({"patient": f"Patient/{patient_id}", "decision": decision}, 202)


@bp.get("/admin/api/lookup")
def lookup() -> Response:
    """``?patient={id}`` or ``?study={StudyInstanceUID}``: PACS and FHIR side by side."""
    operator()
    lookup = _lookup()
    patient, study = request.args.get("patient", "").strip(), request.args.get("study", "").strip()
    if bool(patient) == bool(study):
        raise BadRequest("give exactly one of patient (a Patient id) or study (a StudyInstanceUID)")
    if patient:
        return _json(lookup.of_patient(_patient_id(patient.removeprefix("Patient/"))).to_json())
    return _json(lookup.of_study(study).to_json())


@bp.route("/fhir/Patient/<patient_id>/$imaging-sync-status", methods=["GET", "POST"])
def imaging_sync_status(patient_id: str) -> Response:
    """The Patient lookup as a ``Parameters`` resource (OperationDefinition
    ``imaging-sync-status``: no in-parameters, affectsState false)."""
    operator()
    patient_id = _patient_id(patient_id)
    if request.args or (request.method == "POST" and _body_parameters()):
        raise BadRequest("$imaging-sync-status takes no parameters besides the Patient")
    report = _lookup().of_patient(patient_id)
    return fhir_response(report.to_parameters(), **{"Cache-Control": "no-store"})


def _lookup() -> SyncStatus:
    lookup = current_services().sync_status
    if lookup is None:
        raise NotConfigured("this process was built without the sync-status lookup")
    return lookup


def _body_parameters() -> bool:
    """Whether a POST body names any parameter (an empty ``Parameters`` is fine; R4
    Operations: a POST without in-parameters may send one)."""
    body = read_body(MAX_PARAMETERS_BYTES)
    if not body.strip():
        return False
    resource = parse_json_body(body)
    if not isinstance(resource, dict) or resource.get("resourceType") != "Parameters":
        raise BadRequest("the request body must be a FHIR Parameters resource")
    return bool(resource.get("parameter"))
