"""The operator API (sidecar/entry/web/admin.py) on the real app and queue: who may call it
(401 without a valid token, 403 without the operator role), the overview, retry, re-sync,
the lookup and ``$imaging-sync-status``; every error an OperationOutcome."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sidecar import wiring
from sidecar.adapters.tokens import InvalidToken
from sidecar.core.caller import OPERATOR_ROLE, Caller
from sidecar.core.outcome import Unauthorized
from sidecar.core.sync_explanation import Explanation, PacsCopy, StudyFacts
from sidecar.core.sync_report import PatientReport, StudyReport, StudyRow
from tests.unit.services import build_services

OPERATOR = {"Authorization": "Bearer operator-token"}
CLINICIAN = {"Authorization": "Bearer clinician-token"}


class Tokens:
    """``Services.tokens``: two known tokens, everything else refused as the adapter does."""

    def caller(self, authorization):
        if not authorization:
            raise Unauthorized("a bearer token from the authorization server is required")
        roles = {"Bearer operator-token": {OPERATOR_ROLE}, "Bearer clinician-token": set()}
        if authorization not in roles:
            raise InvalidToken("the token's signature is not valid")
        return Caller(
            token=authorization.split()[1],
            issuer="https://issuer",
            subject="user-1",
            client_id="dicom-fhir-viewer",
            scopes=frozenset({"user/*.rs"}),
            expires_at=2e9,
            roles=frozenset(roles[authorization]),
        )


class Fhir:
    def __init__(self, ids):
        self.ids = set(ids)

    def read(self, resource_type, resource_id):
        if resource_type == "Patient" and resource_id in self.ids:
            return {"resourceType": "Patient", "id": resource_id}
        return None


class Lookup:
    def of_patient(self, patient_id):
        facts = StudyFacts("1.2.3", (PacsCopy("main", 1, 2),), None)
        row = StudyRow(facts, Explanation("not-synced", "In the PACS, not in FHIR"))
        return PatientReport(patient_id, (("main", "urn:x"),), (), {}, {}, None, (row,))

    def of_study(self, uid):
        return StudyReport(uid, (), (), None, None, None, Explanation("not-found", "nowhere"))


@pytest.fixture
def app(tmp_path):
    services = build_services(tmp_path, SYNC_MAX_ATTEMPTS="1")
    services = replace(services, tokens=Tokens(), fhir=Fhir({"p1", "p2"}), sync_status=Lookup())
    yield wiring.web_app(services).test_client(), services
    services.close()


PATHS = [
    ("get", "/admin/api/overview"),
    ("post", "/admin/api/dead-letters/p1/retry"),
    ("post", "/admin/api/patients/p1/resync"),
    ("get", "/admin/api/lookup?patient=p1"),
    ("get", "/fhir/Patient/p1/$imaging-sync-status"),
    ("post", "/fhir/Patient/p1/$imaging-sync-status"),
]


@pytest.mark.parametrize(("method", "path"), PATHS)
@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer forged"}, 401), (CLINICIAN, 403)],
)
def test_only_operators_get_an_answer(app, method, path, headers, status):
    client, _ = app
    answer = getattr(client, method)(path, headers=headers)
    assert answer.status_code == status
    assert answer.json["resourceType"] == "OperationOutcome"
    if status == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    else:
        assert "no imaging-operator role" in answer.json["issue"][0]["diagnostics"]


def test_the_overview_of_an_idle_queue(app):
    client, _ = app
    answer = client.get("/admin/api/overview", headers=OPERATOR)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    data = answer.json
    assert data["queue"]["dead"] == 0 and data["deadLetters"] == data["conflicts"] == []
    assert data["generatedAt"].endswith("Z")


def test_a_dead_letter_is_listed_then_retried(app):
    client, services = app
    services.queue.submit("p1", None, reason="manual")
    assert services.queue.execute("p1") == "dead"  # FHIR refuses: one attempt allowed
    data = client.get("/admin/api/overview", headers=OPERATOR).json
    [dead] = data["deadLetters"]
    assert dead["patient"] == "Patient/p1" and dead["state"] == "dead"
    assert dead["trigger"] == "manual" and dead["lastError"].startswith("HTTP 502")
    answer = client.post("/admin/api/dead-letters/p1/retry", headers=OPERATOR)
    assert answer.status_code == 202 and answer.json["decision"] == "queued"
    after = client.get("/admin/api/overview", headers=OPERATOR).json
    assert after["deadLetters"] == [] and after["pending"][0]["state"] == "queued"
    again = client.post("/admin/api/dead-letters/p1/retry", headers=OPERATOR)
    assert again.status_code == 409 and again.json["resourceType"] == "OperationOutcome"


def test_a_resync_queues_the_patient_as_the_operator(app):
    client, services = app
    answer = client.post("/admin/api/patients/p2/resync", headers=OPERATOR)
    assert answer.status_code == 202 and answer.json == {
        "patient": "Patient/p2",
        "decision": "queued",
    }
    assert services.queue.state("p2").reason == "operator"
    missing = client.post("/admin/api/patients/nobody/resync", headers=OPERATOR)
    assert missing.status_code == 404
    bad = client.post("/admin/api/patients/a%20b/resync", headers=OPERATOR)
    assert bad.status_code == 400


def test_the_lookup_by_patient_or_study(app):
    client, _ = app
    by_patient = client.get("/admin/api/lookup?patient=Patient/p1", headers=OPERATOR).json
    assert by_patient["patient"] == "Patient/p1"
    assert by_patient["studies"][0]["state"] == "not-synced"
    by_study = client.get("/admin/api/lookup?study=1.2.3", headers=OPERATOR).json
    assert by_study["state"] == "not-found"
    both = client.get("/admin/api/lookup?patient=p1&study=1.2.3", headers=OPERATOR)
    assert both.status_code == 400 and both.json["resourceType"] == "OperationOutcome"


def test_the_fhir_operation_answers_parameters(app):
    client, _ = app
    answer = client.get("/fhir/Patient/p1/$imaging-sync-status", headers=OPERATOR)
    assert answer.status_code == 200
    assert answer.content_type.startswith("application/fhir+json")
    assert answer.json["resourceType"] == "Parameters"
    empty = client.post(
        "/fhir/Patient/p1/$imaging-sync-status",
        json={"resourceType": "Parameters"},
        headers=OPERATOR,
    )
    assert empty.status_code == 200
    extra = client.get("/fhir/Patient/p1/$imaging-sync-status?modality=CT", headers=OPERATOR)
    assert extra.status_code == 400


def test_without_an_authorization_server_the_api_says_so(tmp_path):
    services = build_services(tmp_path)
    try:
        answer = wiring.web_app(services).test_client().get("/admin/api/overview")
        assert answer.status_code == 503
        assert "SIDECAR_AUTH_ISSUER" in answer.json["issue"][0]["diagnostics"]
    finally:
        services.close()
