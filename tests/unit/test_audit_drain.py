"""The ``audit`` trigger against a fake FHIR server: batches out of the outbox into FHIR.

The outbox is the real SQLite one; the FHIR adapter is the real one; the server answers
each batch entry by the event's id: ``ok-*`` 201, ``bad-*`` 400 always, ``gone-*`` 400
while it carries a literal reference (its target deleted), ``user-*`` 400 while an agent
does (a fhirUser the server does not hold), ``busy-*`` 503.
"""

from __future__ import annotations

import json

import pytest
from werkzeug import Response

from sidecar.adapters.fhir_store import FhirStore
from sidecar.core import audit
from sidecar.core.outcome import FhirUnavailable
from sidecar.settings import FhirSettings
from subscription_handlers.adapters.audit_outbox import SqliteAuditOutbox
from subscription_handlers.usecases.triggers.audit import DROPPED, AuditDrain
from tests.unit.test_audit_events import AT
from tests.unit.test_audit_events import CLINICIAN as CALLER


class NoLease:
    def cursor(self):
        return None

    def move(self, value):
        raise AssertionError("the drain has no cursor")


def event(event_id: str) -> dict:
    made = audit.write_event("C", "1.2.3", "p1", AT, CALLER)
    return {**made, "id": event_id}


def entry_status(entry: dict) -> str:
    resource = entry["resource"]
    kind = resource["id"].split("-", 1)[0]
    if kind == "bad" or (kind == "gone" and "reference" in json.dumps(resource)):
        return "400 Bad Request"
    if kind == "user" and "reference" in json.dumps(resource["agent"]):
        return "400 Bad Request"
    return "503 Service Unavailable" if kind == "busy" else "201 Created"


def fake_fhir(request) -> Response:
    bundle = request.get_json()
    answer = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [{"response": {"status": entry_status(e)}} for e in bundle["entry"]],
    }
    return Response(json.dumps(answer), status=200, content_type="application/fhir+json")


@pytest.fixture
def outbox(tmp_path):
    return SqliteAuditOutbox(tmp_path / "queue.sqlite3")


def drain_for(url: str, outbox, batch_size: int = 100) -> AuditDrain:
    fhir = FhirStore(FhirSettings(base_url=url, timeout_seconds=2.0, retries=0))
    return AuditDrain(outbox, fhir, interval=2.0, batch_size=batch_size)


def bundles(httpserver) -> list[dict]:
    return [request.get_json() for request, _ in httpserver.log]


def test_one_batch_bundle_of_puts_under_each_events_own_id(httpserver, outbox):
    httpserver.expect_request("/fhir/", method="POST").respond_with_handler(fake_fhir)
    outbox.record_all([event("ok-1"), event("ok-2"), event("ok-3")])
    report = drain_for(httpserver.url_for("/fhir"), outbox).step(NoLease())
    [bundle] = bundles(httpserver)
    assert bundle["type"] == "batch"
    assert [e["request"] for e in bundle["entry"]] == [
        {"method": "PUT", "url": f"AuditEvent/ok-{i}"} for i in (1, 2, 3)
    ]
    assert bundle["entry"][0]["resource"]["resourceType"] == "AuditEvent"
    assert outbox.count() == 0
    assert (report.lag, report.extra) == (0, {"sent": 3, "dropped": 0})


def test_a_5xx_entry_stays_for_the_next_step_the_others_go(httpserver, outbox):
    httpserver.expect_request("/fhir/", method="POST").respond_with_handler(fake_fhir)
    outbox.record_all([event("ok-1"), event("busy-1"), event("ok-2")])
    report = drain_for(httpserver.url_for("/fhir"), outbox).step(NoLease())
    assert [p.event["id"] for p in outbox.pending(10)] == ["busy-1"]
    assert report.lag == 1 and report.extra["sent"] == 2


def test_a_refused_entry_goes_again_without_references_then_is_dropped(httpserver, outbox):
    httpserver.expect_request("/fhir/", method="POST").respond_with_handler(fake_fhir)
    outbox.record_all([event("gone-1"), event("bad-1"), event("ok-1"), event("user-1")])
    before = DROPPED._value.get()
    report = drain_for(httpserver.url_for("/fhir"), outbox).step(NoLease())
    first, agents, everything = bundles(httpserver)
    assert len(first["entry"]) == 4
    # the agents' references first: the Patient's keeps the event findable by ?patient=
    assert [e["resource"]["id"] for e in agents["entry"]] == ["gone-1", "bad-1", "user-1"]
    assert agents["entry"][2]["resource"]["entity"][0]["what"] == {"reference": "Patient/p1"}
    assert [e["resource"]["id"] for e in everything["entry"]] == ["gone-1", "bad-1"]
    assert "reference" not in json.dumps(everything)
    assert everything["entry"][0]["resource"]["entity"][0]["what"] == {"display": "Patient/p1"}
    assert outbox.count() == 0
    assert report.extra == {"sent": 3, "dropped": 1}
    assert DROPPED._value.get() == before + 1


def test_a_server_down_or_failing_whole_keeps_every_event(httpserver, outbox):
    outbox.record_all([event("ok-1"), event("ok-2")])
    httpserver.expect_request("/fhir/", method="POST").respond_with_data("", status=503)
    with pytest.raises(FhirUnavailable):
        drain_for(httpserver.url_for("/fhir"), outbox).step(NoLease())
    with pytest.raises(FhirUnavailable):
        drain_for("http://127.0.0.1:9/fhir", outbox).step(NoLease())  # nothing listens
    assert outbox.count() == 2
    httpserver.clear()
    httpserver.expect_request("/fhir/", method="POST").respond_with_handler(fake_fhir)
    drain_for(httpserver.url_for("/fhir"), outbox).step(NoLease())  # the server is back
    assert outbox.count() == 0


def test_a_bundle_refused_whole_is_sent_again_event_by_event(httpserver, outbox):
    def picky(request) -> Response:
        if len(request.get_json()["entry"]) > 1:
            return Response("{}", status=400, content_type="application/fhir+json")
        return fake_fhir(request)

    httpserver.expect_request("/fhir/", method="POST").respond_with_handler(picky)
    outbox.record_all([event("ok-1"), event("bad-1"), event("ok-2")])
    report = drain_for(httpserver.url_for("/fhir"), outbox).step(NoLease())
    assert report.extra == {"sent": 2, "dropped": 1} and outbox.count() == 0


def test_a_step_sends_several_batches_while_events_wait(httpserver, outbox):
    httpserver.expect_request("/fhir/", method="POST").respond_with_handler(fake_fhir)
    outbox.record_all([event(f"ok-{i}") for i in range(25)])
    report = drain_for(httpserver.url_for("/fhir"), outbox, batch_size=10).step(NoLease())
    assert [len(b["entry"]) for b in bundles(httpserver)] == [10, 10, 5]
    assert report.extra["sent"] == 25 and outbox.count() == 0
