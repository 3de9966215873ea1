"""PUT/DELETE /notify/Patient/{id}: secret check, validation, durable enqueue, fast answer."""

from __future__ import annotations

import json
import time

import pytest

from sidecar import wiring
from sidecar.entry.web.context import EXTENSION
from tests.unit.services import build_services

SECRET = "s3cret-notify-value-0123"
RELAY = "relay-secret-value-0123"
FHIR = "application/fhir+json"


@pytest.fixture
def app(tmp_path):
    services = build_services(
        tmp_path, NOTIFY_SECRET=SECRET, RELAY_SECRET=RELAY, PATIENT_IDENTIFIERS="s"
    )
    yield wiring.web_app(services)
    services.close()


@pytest.fixture
def client(app):
    return app.test_client()


def sync_queue(app):
    return app.extensions[EXTENSION].queue


def put(client, patient_id="p1", body=None, headers=None, content_type=FHIR):
    resource = body if body is not None else {"resourceType": "Patient", "id": patient_id}
    hdrs = {"X-Sidecar-Secret": SECRET} if headers is None else headers
    return client.put(
        f"/notify/Patient/{patient_id}",
        data=json.dumps(resource),
        headers=hdrs,
        content_type=content_type,
    )


def test_a_valid_notification_is_queued(client, app):
    put(client, "warmup")
    response = put(client, "p1", {"resourceType": "Patient", "id": "p1", "identifier": []})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith(FHIR)
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert "queued" in response.get_json()["issue"][0]["diagnostics"]
    state = sync_queue(app).ledger.get("p1")
    assert state is not None and state.pending and state.queued
    assert sync_queue(app).huey.pending_count() == 2


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-Sidecar-Secret": "wrong"}, 403),
        ({"X-Sidecar-Secret": SECRET[:-1]}, 403),
        ({"X-Sidecar-Secret": RELAY}, 403),  # the relay secret does not authorize /notify
        ({"Authorization": "Bearer wrong"}, 403),
        ({"Authorization": f"Basic {SECRET}"}, 403),
    ],
)
def test_a_wrong_or_missing_secret_is_refused_and_nothing_is_queued(client, app, headers, status):
    response = put(client, headers=headers)
    assert response.status_code == status
    assert response.get_json()["resourceType"] == "OperationOutcome"
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert sync_queue(app).ledger.get("p1") is None
    assert sync_queue(app).huey.pending_count() == 0


def test_the_secret_may_come_as_a_bearer_token(client, app):
    assert put(client, headers={"Authorization": f"Bearer {SECRET}"}).status_code == 200


def test_no_configured_secret_refuses_everything(tmp_path):
    services = build_services(tmp_path, RELAY_SECRET=RELAY)
    response = put(wiring.web_app(services).test_client(), headers={"X-Sidecar-Secret": ""})
    services.close()
    assert response.status_code == 503


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ({"resourceType": "Observation"}, FHIR, 400),
        ({"resourceType": "Patient", "id": "other"}, FHIR, 400),
        ({"resourceType": "Patient"}, "text/plain", 415),
    ],
)
def test_invalid_payloads_are_refused_and_not_queued(client, app, body, content_type, status):
    response = put(client, "p1", body, content_type=content_type)
    assert response.status_code == status
    assert response.get_json()["issue"][0]["severity"] == "error"
    assert sync_queue(app).ledger.get("p1") is None


def test_an_irrelevant_update_after_a_sync_is_unchanged(client, app):
    patient = {"resourceType": "Patient", "id": "p1", "identifier": [{"system": "s", "value": "1"}]}
    put(client, "p1", patient)
    q = sync_queue(app)
    from sidecar.core.sync_state import begin, succeed
    from subscription_handlers.usecases.patient_sync import fingerprint_for

    fetch = app.extensions[EXTENSION].fetch

    q.ledger.update("p1", lambda s: begin(s, "h:1:x", time.time(), 30))
    q.ledger.update(
        "p1", lambda s: succeed(s, "h:1:x", time.time(), fingerprint_for(fetch, patient), "synced")
    )
    response = put(client, "p1", {**patient, "telecom": [{"system": "phone", "value": "1"}]})
    assert "unchanged" in response.get_json()["issue"][0]["diagnostics"]
    response = put(client, "p1", {**patient, "identifier": [{"system": "s", "value": "2"}]})
    assert "queued" in response.get_json()["issue"][0]["diagnostics"]


def test_a_delete_is_queued(client, app):
    response = client.delete("/notify/Patient/p9", headers={"X-Sidecar-Secret": SECRET})
    assert response.status_code == 200
    assert sync_queue(app).ledger.get("p9").pending


def test_a_delete_with_a_wrong_secret_is_403(client, app):
    response = client.delete("/notify/Patient/p9", headers={"X-Sidecar-Secret": "no"})
    assert response.status_code == 403
    assert sync_queue(app).ledger.get("p9") is None


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/notify"), ("PUT", "/notify/Observation/1"), ("POST", "/notify/Patient/p1")],
)
def test_other_notifications_are_not_supported(client, method, path):
    response = client.open(path, method=method, headers={"X-Sidecar-Secret": SECRET})
    assert response.status_code in (400, 405)


def test_the_queue_being_down_is_503_so_hapi_retries(client, app, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(sync_queue(app), "submit", broken)
    assert put(client).status_code == 503


@pytest.mark.parametrize("depth", [40, 100_000])
def test_a_deeply_nested_body_is_a_400_and_queues_nothing(client, app, depth):
    """json.loads raised RecursionError (500) on 100 000 levels; 40 is deeper than any
    Patient. Both are refused as invalid, nothing queued."""
    body = '{"resourceType": "Patient", "id": "p1", "extension": ' + "[" * depth + "]" * depth + "}"
    response = client.put(
        "/notify/Patient/p1",
        data=body,
        headers={"X-Sidecar-Secret": SECRET},
        content_type=FHIR,
    )
    assert response.status_code == 400, response.get_data(as_text=True)
    assert "nested deeper" in response.get_json()["issue"][0]["diagnostics"]
    assert sync_queue(app).ledger.get("p1") is None
