"""Issue #19 item 4 on the real stack: AuditEvents reach HAPI and are found by patient.

The sidecar runs in-process on the stack's HAPI and PACS "main" (its own queue file under
tmp_path); the caller's token is signed by a test key and validated against a fake JWKS
(HAPI does not enforce tokens yet). The FHIR server being down is the audit drain pointed at
a closed port: the shared HAPI is never stopped. Everything this test writes to HAPI (its
Patient, ImagingStudies, AuditEvents) is deleted at the end: an AuditEvent that references
a Patient keeps HAPI from deleting that Patient, which other tests do.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import pytest
import requests

from bench.fetch import ISSUER, instance
from sidecar import wiring
from sidecar.adapters.fhir_store import FhirStore
from sidecar.core.outcome import FhirUnavailable
from sidecar.samples.loader import load_into_orthanc
from sidecar.settings import FhirSettings, load_settings
from subscription_handlers.usecases.triggers.audit import AuditDrain
from tests.unit.test_tokens import AUD, issuer, token  # noqa: F401 - fixture

pytestmark = pytest.mark.stack

FHIR = "http://127.0.0.1:8080/fhir"
PACS = "http://127.0.0.1:8042"
ORTHANC = ("orthanc", "orthanc")
SYSTEM = "urn:example:mrn:audit-it"
PACS_PATIENT = "AUDIT-IT-1"  # one study of its own in PACS "main", loaded idempotently
RELAY = "audit-test-relay-secret-0123"


class NoLease:
    def cursor(self):
        return None

    def move(self, value):
        raise AssertionError("the drain has no cursor")


@pytest.fixture
def hapi() -> Iterator[requests.Session]:
    http = requests.Session()
    http.headers.update({"Content-Type": "application/fhir+json", "Cache-Control": "no-cache"})
    try:
        http.get(f"{FHIR}/metadata", params={"_summary": "true"}, timeout=5).raise_for_status()
        requests.get(f"{PACS}/system", auth=ORTHANC, timeout=5).raise_for_status()
    except requests.RequestException:
        pytest.skip("the local stack (HAPI on 8080, Orthanc on 8042) is not running")
    yield http
    http.close()


@pytest.fixture
def patient(hapi) -> Iterator[str]:
    report = load_into_orthanc(
        (instance(PACS_PATIENT, 0, 0, i) for i in range(2)), base_url=PACS, auth=ORTHANC
    )
    assert not report.failed, report
    patient_id = f"t-audit-{uuid.uuid4().hex[:10]}"
    body = {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [{"system": SYSTEM, "value": PACS_PATIENT}],
    }
    hapi.put(f"{FHIR}/Patient/{patient_id}", json=body).raise_for_status()
    yield patient_id
    for kind, query in (
        ("AuditEvent", f"patient=Patient/{patient_id}"),
        ("ImagingStudy", f"subject=Patient/{patient_id}"),
    ):
        for found in search(hapi, f"{kind}?{query}&_count=200"):
            hapi.delete(f"{FHIR}/{kind}/{found['id']}")
    hapi.delete(f"{FHIR}/Patient/{patient_id}")


def search(hapi: requests.Session, query: str) -> list[dict]:
    bundle = hapi.get(f"{FHIR}/{query}").json()
    return [e["resource"] for e in bundle.get("entry", [])]


@pytest.fixture
def services(tmp_path, issuer):  # noqa: F811 - the fixture imported above
    settings = load_settings(
        {
            "SIDECAR_DATA_DIR": str(tmp_path),
            "SIDECAR_FHIR_BASE_URL": FHIR,
            "SIDECAR_PACS_MAIN_URL": f"{PACS}/dicom-web",
            "SIDECAR_PACS_MAIN_USERNAME": ORTHANC[0],
            "SIDECAR_PACS_MAIN_PASSWORD": ORTHANC[1],
            "SIDECAR_PATIENT_IDENTIFIERS": f"{SYSTEM}|{ISSUER}",
            "SIDECAR_RELAY_SECRET": RELAY,
            "SIDECAR_AUTH_ISSUER": issuer,
            "SIDECAR_AUTH_AUDIENCE": AUD,
        }
    )
    built = wiring.build(settings)
    yield built
    built.close()


def drain(services) -> AuditDrain:
    return next(t for t in services.triggers if isinstance(t, AuditDrain))


def user_of(event: dict) -> dict:
    return next(a for a in event["agent"] if a["requestor"])["who"]


def test_a_fetch_and_a_retrieval_reach_hapi_after_it_returns(services, patient, hapi, issuer):  # noqa: F811
    client = wiring.web_app(services).test_client()
    user_token = token(issuer, azp="dicom-fhir-viewer")
    headers = {"X-Sidecar-Secret": RELAY, "X-Caller-Authorization": f"Bearer {user_token}"}
    answer = client.get(
        f"/fhir/Patient/$fetch-imaging?identifier={SYSTEM}|{PACS_PATIENT}&persist=false",
        headers=headers,
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    studies = [e["resource"] for e in answer.json["entry"] if e["search"]["mode"] == "match"]
    assert len(studies) == 1
    study_uid = studies[0]["identifier"][0]["value"].removeprefix("urn:oid:")
    caller = services.tokens.caller(f"Bearer {user_token}")
    for _ in range(5):  # a viewer's frame reads of one study
        services.retrievals.seen(caller, patient, study_uid, "main", 200, "wado")
    services.retrievals.close()  # the window's last count on record

    # the FHIR server is unreachable while the accesses happen: nothing is lost
    down = FhirStore(FhirSettings(base_url="http://127.0.0.1:9/fhir", retries=0))
    with pytest.raises(FhirUnavailable):
        AuditDrain(services.audit, down).step(NoLease())
    assert services.audit.count() == 2
    assert search(hapi, f"AuditEvent?patient=Patient/{patient}") == []

    # it is back: the next step delivers both, in one batch
    report = drain(services).step(NoLease())
    assert report.extra == {"sent": 2, "dropped": 0} and services.audit.count() == 0
    found = search(hapi, f"AuditEvent?patient=Patient/{patient}")
    by_subtype = {e["subtype"][0]["code"]: e for e in found}
    assert sorted(by_subtype) == ["operation", "read"] and len(found) == 2
    for event in found:
        assert user_of(event)["identifier"] == {"system": issuer, "value": "u1"}
    query = next(e for e in by_subtype["operation"]["entity"] if "query" in e)
    assert PACS_PATIENT not in base64.b64decode(query["query"]).decode()
    assert PACS_PATIENT not in str(found)
    read = by_subtype["read"]
    detail = {d["type"]: d["valueString"] for d in read["entity"][-1]["detail"]}
    assert detail["requests"] == "5" and read["period"]["start"] <= read["period"]["end"]


def test_a_fetch_that_writes_records_each_study_with_the_caller_as_author(
    services,
    patient,
    hapi,
    issuer,  # noqa: F811
):
    client = wiring.web_app(services).test_client()
    headers = {"Authorization": f"Bearer {token(issuer, azp='cli')}"}
    answer = client.post(f"/fhir/Patient/{patient}/$fetch-imaging", headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    drain(services).step(NoLease())
    found = search(hapi, f"AuditEvent?patient=Patient/{patient}")
    assert sorted(e["action"] for e in found) == ["C", "E"]
    created = next(e for e in found if e["action"] == "C")
    assert user_of(created)["identifier"]["value"] == "u1"
    assert created["entity"][1]["what"]["identifier"]["system"] == "urn:dicom:uid"
