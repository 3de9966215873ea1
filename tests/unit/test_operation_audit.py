"""``$fetch-imaging`` records an AuditEvent for every call, with the caller of the token
(relayed by HAPI in X-Caller-Authorization, or sent directly), against a fake JWKS."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from sidecar import wiring
from sidecar.core.outcome import PacsTimeout, PatientNotVisible
from sidecar.usecases.fetch_imaging import FetchResult
from tests.unit.services import build_services
from tests.unit.test_audit_trail import ListSink
from tests.unit.test_tokens import AUD, issuer, token  # noqa: F401 - fixture
from tests.unit.test_web_app import RELAY, StubFetch

STATIC = "static-bearer-token-0123"
MRN = "MRN-SECRET-4711"


class AnsweringFetch(StubFetch):
    def __call__(self, request):
        super().__call__(request)
        study = {"resourceType": "ImagingStudy", "id": "1.2.3", "status": "available"}
        return FetchResult({"id": "p1"}, [study], [], [])


@pytest.fixture
def app(tmp_path, issuer):  # noqa: F811 - the fixture imported above
    services = build_services(
        tmp_path,
        RELAY_SECRET=RELAY,
        BEARER_TOKENS=STATIC,
        AUTH_ISSUER=issuer,
        AUTH_AUDIENCE=AUD,
    )
    fetch, sink = AnsweringFetch(), ListSink()
    client = wiring.web_app(replace(services, fetch=fetch, audit=sink)).test_client()
    yield client, fetch, sink, issuer
    services.close()


def post(client, path="/fhir/Patient/p1/$fetch-imaging", **headers):
    return client.post(path, headers=headers)


def agents(event) -> set[str]:
    return {
        a["who"].get("identifier", {}).get("value") or a["who"].get("display")
        for a in event["agent"]
    }


def test_hapis_relay_passes_the_callers_token_the_event_names_it(app):
    client, fetch, sink, iss = app
    user = token(iss, azp="dicom-fhir-viewer", fhirUser="Practitioner/pr1")
    headers = {"X-Sidecar-Secret": RELAY, "X-Caller-Authorization": f"Bearer {user}"}
    r = post(client, **headers, **{"X-Request-Id": "req-0123456789"})
    assert r.status_code == 200
    assert fetch.requests[0].caller.subject == "u1"
    [event] = sink.events
    assert event["action"] == "E" and event["outcome"] == "0"
    assert event["entity"][0]["what"] == {"reference": "Patient/p1"}
    assert {"u1", "dicom-fhir-viewer"} <= agents(event)
    assert event["agent"][0]["who"]["reference"] == "Practitioner/pr1"
    assert event["entity"][-1]["what"] == {"identifier": {"value": "req-0123456789"}}


def test_a_direct_caller_may_present_its_own_token(app):
    client, fetch, sink, iss = app
    r = post(client, Authorization=f"Bearer {token(iss, azp='cli')}")
    assert r.status_code == 200 and fetch.requests[0].caller.client_id == "cli"
    assert "cli" in agents(sink.events[0])


def test_a_sidecar_credential_alone_is_recorded_without_a_user(app):
    client, fetch, sink, _ = app
    assert post(client, Authorization=f"Bearer {STATIC}").status_code == 200
    assert post(client, **{"X-Sidecar-Secret": RELAY}).status_code == 200
    assert [r.caller for r in fetch.requests] == [None, None]
    assert all(e["agent"][0]["requestor"] for e in sink.events)  # the app is the requestor
    assert all(e["outcome"] == "0" for e in sink.events)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"X-Sidecar-Secret": RELAY, "X-Caller-Authorization": "Bearer forged.token.x"},
    ],
)
def test_a_refused_credential_is_a_refusal_event_and_nothing_runs(app, headers):
    client, fetch, sink, _ = app
    r = post(client, **headers)
    assert r.status_code == 401 and not fetch.requests
    [event] = sink.events
    assert (
        event["outcome"] == "4"
        and "refused: $fetch-imaging instance level" in (event["outcomeDesc"])
    )
    assert event["entity"][0]["what"] == {"reference": "Patient/p1"}


def test_a_patient_the_caller_may_not_read_answers_not_found_and_is_a_refusal(app):
    client, fetch, sink, iss = app
    fetch.error = PatientNotVisible("no Patient has the given identifier", patient_id="p9")
    r = client.post(
        f"/fhir/Patient/$fetch-imaging?identifier=urn:mrn|{MRN}",
        headers={"Authorization": f"Bearer {token(iss)}"},
    )
    assert r.status_code == 404
    assert r.json["issue"][0]["diagnostics"] == "no Patient has the given identifier"
    assert "p9" not in r.get_data(as_text=True)
    [event] = sink.events
    assert event["outcomeDesc"].startswith("refused: $fetch-imaging type level")
    assert event["entity"][0]["what"] == {"reference": "Patient/p9"}
    assert MRN not in json.dumps(event)


def test_a_failure_upstream_is_the_call_with_its_status_and_no_identifier_value(app):
    client, fetch, sink, _ = app
    fetch.error = PacsTimeout("PACS main did not answer")
    r = client.post(
        f"/fhir/Patient/$fetch-imaging?identifier=urn:mrn|{MRN}&modality=CT",
        headers={"X-Sidecar-Secret": RELAY},
    )
    assert r.status_code == 504
    [event] = sink.events
    assert event["outcome"] == "8" and event["outcomeDesc"] == "HTTP 504"
    query = next(e for e in event["entity"] if "query" in e)
    assert query["description"] == "$fetch-imaging?modality=CT (values not recorded: identifier)"
    assert MRN not in json.dumps(event)


def test_a_bad_parameter_records_its_name_never_its_value(app):
    client, _, sink, _ = app
    r = client.post(
        f"/fhir/Patient/p1/$fetch-imaging?modality={MRN}", headers={"X-Sidecar-Secret": RELAY}
    )
    assert r.status_code == 400
    assert MRN not in json.dumps(sink.events)
    query = next(e for e in sink.events[0]["entity"] if "query" in e)
    assert query["description"] == "$fetch-imaging?patient=p1&modality"
