"""Issue #19 item 4 on the real stack: AuditEvents reach HAPI and are found by patient.

The sidecar runs in-process on the stack's HAPI and PACS "main", with a queue file of its
own under tmp_path (its outbox holds this test's events only). The caller's token is the
stack's own (a patient token from its Keycloak) when HAPI enforces tokens; with
``STACK_AUTH=none`` it is signed by a test key and validated against a fake JWKS. The FHIR
server being down is the audit drain pointed at a closed port: HAPI is never stopped.
What this test writes to HAPI (its Patient, ImagingStudies, AuditEvents) is deleted at the
end; deleting the Patient while its AuditEvents stay is itself checked (HAPI's delete
conflicts ignore AuditEvent references: deploy/hapi/server AuditReferencesConfig).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bench.fetch import ISSUER, instance
from sidecar import wiring
from sidecar.adapters.fhir_store import FhirStore
from sidecar.core.outcome import FhirUnavailable
from sidecar.samples.loader import load_into_orthanc
from sidecar.settings import FhirSettings, load_settings
from subscription_handlers.usecases.triggers.audit import AuditDrain
from tests.conftest import stack_sh, token_claims, with_pacs
from tests.unit.test_tokens import AUD, publish_keys, token

pytestmark = pytest.mark.stack

SYSTEM = "urn:example:mrn:audit-it"
PACS_PATIENT = "AUDIT-IT-1"  # one study of its own in PACS "main", loaded idempotently
RELAY = "audit-test-relay-secret-0123"


class NoLease:
    def cursor(self):
        return None

    def move(self, value):
        raise AssertionError("the drain has no cursor")


@dataclass
class World:
    patient_id: str
    caller_token: str
    issuer: str
    subject: str
    services: object

    @property
    def drain(self) -> AuditDrain:
        return next(t for t in self.services.triggers if isinstance(t, AuditDrain))


@pytest.fixture
def world(stack, fhir_http, httpserver, tmp_path) -> Iterator[World]:
    pacs = stack.pacs["main"]
    report = load_into_orthanc(
        (instance(PACS_PATIENT, 0, 0, i) for i in range(2)), base_url=pacs.base_url, auth=pacs.auth
    )
    assert not report.failed, report
    base = stack.fhir_base
    for stale in search(fhir_http, base, f"Patient?identifier={SYSTEM}|{PACS_PATIENT}"):
        forget(fhir_http, base, stale["id"])  # left by an interrupted run: a 409 otherwise
    patient_id = f"t-audit-{uuid.uuid4().hex[:10]}"
    body = {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [{"system": SYSTEM, "value": PACS_PATIENT}],
    }
    fhir_http.put(f"{base}/Patient/{patient_id}", json=body).raise_for_status()
    env = {
        **with_pacs(stack.env(), ["main"]),
        "SIDECAR_DATA_DIR": str(tmp_path),
        "SIDECAR_PATIENT_IDENTIFIERS": f"{SYSTEM}|{ISSUER}",
        "SIDECAR_RELAY_SECRET": RELAY,
    }
    if env.get("SIDECAR_AUTH_ISSUER"):  # HAPI enforces tokens: the stack's own caller
        caller_token = stack.token("--patient", f"Patient/{patient_id}")
    else:  # a test key, published by a fake authorization server
        issuer = publish_keys(httpserver)
        env.update({"SIDECAR_AUTH_ISSUER": issuer, "SIDECAR_AUTH_AUDIENCE": AUD})
        caller_token = token(issuer, azp="dicom-fhir-viewer")
    claims = token_claims(caller_token)
    services = wiring.build(load_settings(env))
    try:
        yield World(patient_id, caller_token, claims["iss"], claims["sub"], services)
    finally:
        services.close()
        forget(fhir_http, base, patient_id)


def search(http, base: str, query: str) -> list[dict]:
    answer = http.get(f"{base}/{query}", headers={"Cache-Control": "no-cache"})
    answer.raise_for_status()
    return [e["resource"] for e in answer.json().get("entry", [])]


def forget(http, base: str, patient_id: str) -> None:
    """This test's resources off the shared server: studies, the Patient (its AuditEvents
    must not keep it), then the AuditEvents."""
    for study in search(http, base, f"ImagingStudy?subject=Patient/{patient_id}&_count=200"):
        http.delete(f"{base}/ImagingStudy/{study['id']}")
    events = search(http, base, f"AuditEvent?patient=Patient/{patient_id}&_count=200")
    http.delete(f"{base}/Patient/{patient_id}")
    for event in events:
        http.delete(f"{base}/AuditEvent/{event['id']}")


def user_of(event: dict) -> dict:
    return next(a for a in event["agent"] if a["requestor"])["who"]


def test_a_fetch_and_a_retrieval_reach_hapi_after_it_returns(world, stack, fhir_http):
    services = world.services
    client = wiring.web_app(services).test_client()
    headers = {"X-Sidecar-Secret": RELAY, "X-Caller-Authorization": f"Bearer {world.caller_token}"}
    answer = client.get(
        f"/fhir/Patient/$fetch-imaging?identifier={SYSTEM}|{PACS_PATIENT}&persist=false",
        headers=headers,
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    studies = [e["resource"] for e in answer.json["entry"] if e["search"]["mode"] == "match"]
    assert len(studies) == 1
    study_uid = studies[0]["identifier"][0]["value"].removeprefix("urn:oid:")
    caller = services.tokens.caller(f"Bearer {world.caller_token}")
    for _ in range(5):  # a viewer's frame reads of one study, through the gateway
        services.retrievals.seen(caller, world.patient_id, study_uid, "main", 200, "wado")
    services.retrievals.close()  # the window's last count on record

    # the FHIR server is unreachable while the accesses happen: nothing is lost
    down = FhirStore(FhirSettings(base_url="http://127.0.0.1:9/fhir", retries=0))
    with pytest.raises(FhirUnavailable):
        AuditDrain(services.audit, down).step(NoLease())
    assert services.audit.count() == 2
    base = stack.fhir_base
    assert search(fhir_http, base, f"AuditEvent?patient=Patient/{world.patient_id}") == []

    # it is back: the next step delivers both, in one batch
    report = world.drain.step(NoLease())
    assert report.extra == {"sent": 2, "dropped": 0} and services.audit.count() == 0
    found = search(fhir_http, base, f"AuditEvent?patient=Patient/{world.patient_id}")
    by_subtype = {e["subtype"][0]["code"]: e for e in found}
    assert sorted(by_subtype) == ["operation", "read"] and len(found) == 2
    for event in found:  # the agent is the token's holder
        assert user_of(event)["identifier"] == {"system": world.issuer, "value": world.subject}
    query = next(e for e in by_subtype["operation"]["entity"] if "query" in e)
    assert PACS_PATIENT not in base64.b64decode(query["query"]).decode()
    assert PACS_PATIENT not in str(found)
    read = by_subtype["read"]
    detail = {d["type"]: d["valueString"] for d in read["entity"][-1]["detail"]}
    assert detail["requests"] == "5" and read["period"]["start"] <= read["period"]["end"]

    # the events never keep the Patient alive, and stay findable once it is gone
    deleted = fhir_http.delete(f"{base}/Patient/{world.patient_id}")
    assert deleted.status_code in (200, 204), deleted.text
    assert len(search(fhir_http, base, f"AuditEvent?patient=Patient/{world.patient_id}")) == 2


def test_a_fetch_that_writes_records_each_study_with_the_caller_as_author(world, stack, fhir_http):
    client = wiring.web_app(world.services).test_client()
    headers = {"X-Sidecar-Secret": RELAY, "X-Caller-Authorization": f"Bearer {world.caller_token}"}
    answer = client.post(f"/fhir/Patient/{world.patient_id}/$fetch-imaging", headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    world.drain.step(NoLease())
    found = search(fhir_http, stack.fhir_base, f"AuditEvent?patient=Patient/{world.patient_id}")
    assert sorted(e["action"] for e in found) == ["C", "E"]
    created = next(e for e in found if e["action"] == "C")
    assert user_of(created)["identifier"]["value"] == world.subject
    assert created["entity"][1]["what"]["identifier"]["system"] == "urn:dicom:uid"


def test_a_patient_the_token_may_not_read_is_not_found_and_recorded_as_refused(
    world, stack, fhir_http
):
    if not stack.env().get("SIDECAR_AUTH_ISSUER"):
        pytest.skip("HAPI does not enforce tokens here (STACK_AUTH=none)")
    other = stack.token("--patient", f"Patient/t-audit-other-{uuid.uuid4().hex[:6]}")
    client = wiring.web_app(world.services).test_client()
    headers = {"X-Sidecar-Secret": RELAY, "X-Caller-Authorization": f"Bearer {other}"}
    answer = client.post(
        f"/fhir/Patient/$fetch-imaging?identifier={SYSTEM}|{PACS_PATIENT}", headers=headers
    )
    assert answer.status_code == 404
    assert answer.json["issue"][0]["diagnostics"] == "no Patient has the given identifier"
    assert world.patient_id not in answer.get_data(as_text=True)
    world.drain.step(NoLease())
    [event] = search(fhir_http, stack.fhir_base, f"AuditEvent?patient=Patient/{world.patient_id}")
    assert event["outcome"] == "4" and event["outcomeDesc"].startswith("refused: $fetch-imaging")
    assert user_of(event)["identifier"]["value"] == token_claims(other)["sub"]


def test_gateway_retrievals_while_hapi_is_stopped_reach_it_when_it_returns(world, stack, fhir_http):
    """The real thing, end to end: a fetch writes the study; its frames are read through the
    gateway (the decision is cached); HAPI is stopped; more reads (the cached decision still
    holds) and a refused one happen; nothing reaches HAPI until it is back, then all of it
    does, findable by ``?patient=``."""
    if not stack.env().get("SIDECAR_AUTH_ISSUER"):
        pytest.skip("HAPI does not enforce tokens here (STACK_AUTH=none)")
    services = world.services
    client = wiring.web_app(services).test_client()
    bearer = {"Authorization": f"Bearer {world.caller_token}"}
    relay = {"X-Sidecar-Secret": RELAY, "X-Caller-Authorization": bearer["Authorization"]}
    fetched = client.post(f"/fhir/Patient/{world.patient_id}/$fetch-imaging", headers=relay)
    assert fetched.status_code == 200, fetched.get_data(as_text=True)
    [study] = [e["resource"] for e in fetched.json["entry"] if e["search"]["mode"] == "match"]
    study_uid = study["identifier"][0]["value"].removeprefix("urn:oid:")
    metadata = f"/dicomweb/main/studies/{study_uid}/metadata"
    assert client.get(metadata, headers=bearer).status_code == 200
    stack_sh("down", "hapi")
    try:
        for _ in range(3):  # the decision is cached: the PACS answers, HAPI is not asked
            assert client.get(metadata, headers=bearer).status_code == 200
        assert client.get(metadata, headers={"Authorization": "Bearer nope"}).status_code == 401
        services.retrievals.close()  # the window's count on record
        with pytest.raises(FhirUnavailable):
            world.drain.step(NoLease())
        waiting = services.audit.count()
    finally:
        stack_sh("up", "hapi")
    world.drain.step(NoLease())
    assert services.audit.count() == 0
    found = search(fhir_http, stack.fhir_base, f"AuditEvent?patient=Patient/{world.patient_id}")
    reads = [e for e in found if e["subtype"][0]["code"] == "read"]
    assert len(reads) == 1  # four reads of one study by one token: one event
    detail = {d["type"]: d["valueString"] for d in reads[0]["entity"][-1]["detail"]}
    assert detail["requests"] == "4"
    assert user_of(reads[0])["identifier"]["value"] == world.subject
    assert waiting >= 3  # the fetch, the study it wrote, the reads (the refusal names no one)
