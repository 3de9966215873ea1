"""PUT/DELETE /notify/Patient/{id}: secret check, validation, durable enqueue, fast answer."""

from __future__ import annotations

import json
import time

import pytest
from flask import Flask

from subscription_handlers import notify
from subscription_handlers import queue as queue_module
from subscription_handlers.settings import SyncSettings

SECRET = "s3cret-value"
FHIR = "application/fhir+json"


@pytest.fixture
def app(tmp_path, monkeypatch):
    settings = SyncSettings(shared_secret=SECRET, queue_path=tmp_path / "q.sqlite3")
    monkeypatch.setattr(queue_module, "_process_queue", None)
    flask_app = Flask("test")
    notify.init_app(flask_app, settings)
    yield flask_app
    queue_module.get_queue(settings).close()
    monkeypatch.setattr(queue_module, "_process_queue", None)


@pytest.fixture
def client(app):
    return app.test_client()


def sync_queue(app):
    return queue_module.get_queue(app.extensions[notify.EXTENSION])


def put(client, patient_id="p1", body=None, headers=None, content_type=FHIR):
    resource = body if body is not None else {"resourceType": "Patient", "id": patient_id}
    hdrs = {"X-Sidecar-Secret": SECRET} if headers is None else headers
    return client.put(
        f"/notify/Patient/{patient_id}",
        data=json.dumps(resource),
        headers=hdrs,
        content_type=content_type,
    )


def test_a_valid_notification_is_queued_and_answered_fast(client, app):
    put(client, "warmup")
    started = time.perf_counter()
    response = put(client, "p1", {"resourceType": "Patient", "id": "p1", "identifier": []})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type == FHIR
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert "queued" in response.get_json()["issue"][0]["diagnostics"]
    assert elapsed < 0.2
    state = sync_queue(app).ledger.get("p1")
    assert state is not None and state.pending and state.queued
    assert sync_queue(app).huey.pending_count() == 2


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Sidecar-Secret": "wrong"},
        {"X-Sidecar-Secret": SECRET[:-1]},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {SECRET}"},
    ],
)
def test_a_wrong_or_missing_secret_is_401_and_nothing_is_queued(client, app, headers):
    response = put(client, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert sync_queue(app).ledger.get("p1") is None
    assert sync_queue(app).huey.pending_count() == 0


def test_the_secret_may_come_as_a_bearer_token(client, app):
    assert put(client, headers={"Authorization": f"Bearer {SECRET}"}).status_code == 200


def test_no_configured_secret_refuses_everything(tmp_path, monkeypatch):
    monkeypatch.setattr(queue_module, "_process_queue", None)
    flask_app = Flask("test")
    notify.init_app(flask_app, SyncSettings(shared_secret=None, queue_path=tmp_path / "q"))
    response = put(flask_app.test_client(), headers={"X-Sidecar-Secret": ""})
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
    from subscription_handlers.patient_rules import relevant_fingerprint
    from subscription_handlers.state import begin, succeed

    q.ledger.update("p1", lambda s: begin(s, "h:1:x", time.time(), 30))
    q.ledger.update(
        "p1", lambda s: succeed(s, "h:1:x", time.time(), relevant_fingerprint(patient), "synced")
    )
    response = put(client, "p1", {**patient, "telecom": [{"system": "phone", "value": "1"}]})
    assert "unchanged" in response.get_json()["issue"][0]["diagnostics"]
    response = put(client, "p1", {**patient, "identifier": [{"system": "s", "value": "2"}]})
    assert "queued" in response.get_json()["issue"][0]["diagnostics"]


def test_a_delete_is_queued(client, app):
    response = client.delete("/notify/Patient/p9", headers={"X-Sidecar-Secret": SECRET})
    assert response.status_code == 200
    assert sync_queue(app).ledger.get("p9").pending


def test_a_delete_with_a_wrong_secret_is_401(client, app):
    response = client.delete("/notify/Patient/p9", headers={"X-Sidecar-Secret": "no"})
    assert response.status_code == 401
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
