"""One patient's sync when the FHIR server has no such Patient: delete only on proof.

The FHIR server here is the real adapter against a fake HTTP server that answers as HAPI
does: 410 Gone for a deleted Patient (and a DELETE entry in its history), 404 for one it
never had, or for every path when it is a proxy in front of the wrong place.
"""

from __future__ import annotations

import json

import pytest
from werkzeug import Request, Response

from sidecar.core.sync_state import MISSING
from sidecar.settings import load_settings
from subscription_handlers.adapters.queue import HueySyncQueue
from subscription_handlers.usecases.patient_sync import PatientSync
from tests.unit.services import build_services

FHIR = "application/fhir+json"
STUDY = {
    "resourceType": "ImagingStudy",
    "id": "1.2.3",
    "status": "available",
    "subject": {"reference": "Patient/p1"},
    "endpoint": [{"reference": "Endpoint/dicomweb-main"}],
}


class FakeHapi:
    def __init__(self, httpserver, *, patient_status: int, history: list[dict]) -> None:
        self.patient_status = patient_status
        self.history = history
        self.transactions: list[dict] = []
        httpserver.expect_request("/fhir/Patient/p1").respond_with_handler(self.patient)
        httpserver.expect_request("/fhir/Patient/p1/_history").respond_with_handler(self.hist)
        httpserver.expect_request("/fhir/ImagingStudy").respond_with_json(
            {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": STUDY}]}
        )
        for root in ("/fhir", "/fhir/"):
            httpserver.expect_request(root, method="POST").respond_with_handler(self.transaction)

    def patient(self, request: Request) -> Response:
        outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]}
        return Response(json.dumps(outcome), status=self.patient_status, content_type=FHIR)

    def hist(self, request: Request) -> Response:
        if not self.history:
            return Response("{}", status=404, content_type=FHIR)
        bundle = {"resourceType": "Bundle", "type": "history", "entry": self.history}
        return Response(json.dumps(bundle), content_type=FHIR)

    def transaction(self, request: Request) -> Response:
        self.transactions.append(json.loads(request.data))
        answer = {"resourceType": "Bundle", "type": "transaction-response", "entry": []}
        return Response(json.dumps(answer), content_type=FHIR)


@pytest.fixture
def sync(httpserver, tmp_path):
    def make(**fake):
        hapi = FakeHapi(httpserver, **fake)
        services = build_services(tmp_path, FHIR_BASE_URL=httpserver.url_for("/fhir"))
        return PatientSync(services.fetch), hapi, services

    return make


@pytest.mark.parametrize(
    ("status", "history"),
    [
        (404, []),  # never existed, or a proxy answering 404 for everything
        (404, [{"request": {"method": "PUT", "url": "Patient/p1"}}]),  # history without a delete
    ],
)
def test_a_plain_404_deletes_nothing(sync, status, history):
    run, hapi, services = sync(patient_status=status, history=history)
    try:
        outcome = run("p1")
    finally:
        services.close()
    assert outcome.status == MISSING
    assert hapi.transactions == []  # the ImagingStudy of Patient/p1 is left alone


@pytest.mark.parametrize(
    ("status", "history"),
    [(410, []), (404, [{"request": {"method": "DELETE", "url": "Patient/p1"}}])],
)
def test_a_patient_the_server_says_was_deleted_loses_its_studies(sync, status, history):
    run, hapi, services = sync(patient_status=status, history=history)
    try:
        outcome = run("p1")
    finally:
        services.close()
    assert outcome.status == "deleted"
    (bundle,) = hapi.transactions
    assert [e["request"] for e in bundle["entry"]] == [
        {"method": "DELETE", "url": "ImagingStudy/1.2.3"}
    ]


def test_a_patient_that_does_not_exist_leaves_no_ledger_record(tmp_path):
    """A flood of notifications for random ids must not grow the ledger without bound."""
    settings = load_settings({"SIDECAR_DATA_DIR": str(tmp_path)})
    from sidecar.core.sync_state import SyncOutcome

    queue = HueySyncQueue(settings.sync, runner=lambda *job: SyncOutcome(MISSING, None))
    try:
        for n in range(20):
            queue.submit(f"random-{n}", None, reason="update")
            assert queue.execute(f"random-{n}") == MISSING
        assert all(queue.ledger.get(f"random-{n}") is None for n in range(20))
        assert queue.status()["pending"] == 0
    finally:
        queue.close()
