"""Issue 5 acceptance: `$fetch-imaging` called on HAPI itself, relayed by our Java provider to
the stack's sidecar (127.0.0.1:8090), with the OperationDefinition published on HAPI."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from sidecar.settings import load_settings
from sidecar.wiring import build_registrar
from tests.conftest import Stack, stack_sh
from tests.integration.conftest import start_stack_sidecar

pytestmark = pytest.mark.stack

MRN_A = "urn:example:mrn:hosp-a"
FHIR_JSON = {"Accept": "application/fhir+json"}


@pytest.fixture
def roster_patient(clean_fhir: Stack, fhir_http: requests.Session, sample_data) -> dict:
    """A FHIR Patient whose identifier names roster patient P-1001 (HOSP-A) in PACS main."""
    patient = {
        "resourceType": "Patient",
        "id": f"op-{uuid.uuid4().hex[:12]}",
        "identifier": [{"system": MRN_A, "value": "P-1001"}],
    }
    put = fhir_http.put(f"{clean_fhir.fhir_base}/Patient/{patient['id']}", json=patient)
    assert put.status_code == 201, put.text
    return patient


def _content(bundle: dict) -> list[tuple[str, dict]]:
    """A searchset's entries without the per-answer envelope (Bundle id and timestamp)."""
    return [(e.get("fullUrl", ""), e["resource"]) for e in bundle["entry"]]


def _studies(bundle: dict) -> list[dict]:
    return [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ImagingStudy"
    ]


def test_fetch_on_hapi_returns_the_sidecars_bundle_and_stores_it(
    stack: Stack, stack_sidecar: str, roster_patient: dict, fhir_http: requests.Session
) -> None:
    patient_id = roster_patient["id"]

    def direct() -> dict:
        answer = requests.post(
            f"{stack_sidecar}/fhir/Patient/{patient_id}/$fetch-imaging",
            headers={"X-Sidecar-Secret": stack.relay_secret, **FHIR_JSON},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    direct()  # the first fetch writes; the two compared below find nothing to change
    through_hapi = fhir_http.post(f"{stack.fhir_base}/Patient/{patient_id}/$fetch-imaging")
    assert through_hapi.status_code == 200, through_hapi.text
    assert through_hapi.headers["Content-Type"].startswith("application/fhir+json")
    bundle = through_hapi.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    studies = _studies(bundle)
    assert studies and all(s["subject"]["reference"] == f"Patient/{patient_id}" for s in studies)
    assert _content(direct()) == _content(bundle)

    stored = fhir_http.get(
        f"{stack.fhir_base}/ImagingStudy",
        params={"subject": f"Patient/{patient_id}"},
        headers={"Cache-Control": "no-cache"},
    ).json()
    assert {e["resource"]["id"] for e in stored.get("entry", [])} == {s["id"] for s in studies}


def test_type_level_fetch_by_identifier(
    stack: Stack, stack_sidecar: str, roster_patient: dict, fhir_http: requests.Session
) -> None:
    found = fhir_http.get(
        f"{stack.fhir_base}/Patient/$fetch-imaging", params={"identifier": f"{MRN_A}|P-1001"}
    )
    assert found.status_code == 200, found.text
    studies = _studies(found.json())
    assert studies
    assert {s["subject"]["reference"] for s in studies} == {f"Patient/{roster_patient['id']}"}

    unknown = fhir_http.get(
        f"{stack.fhir_base}/Patient/$fetch-imaging",
        params={"identifier": f"{MRN_A}|NO-SUCH-{uuid.uuid4().hex[:6]}"},
    )
    assert unknown.status_code == 404
    outcome = unknown.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"


def test_metadata_lists_the_operation_and_one_operation_definition(
    stack: Stack, fhir_http: requests.Session
) -> None:
    registrar = build_registrar(load_settings({"SIDECAR_FHIR_BASE_URL": stack.fhir_base}))
    registrar.ensure_operation_definition()
    assert registrar.ensure_operation_definition() == "unchanged"  # idempotent

    metadata = fhir_http.get(f"{stack.fhir_base}/metadata").json()
    patient = next(r for r in metadata["rest"][0]["resource"] if r["type"] == "Patient")
    assert "fetch-imaging" in {op["name"] for op in patient.get("operation", [])}

    found = fhir_http.get(
        f"{stack.fhir_base}/OperationDefinition",
        params={"code": "fetch-imaging"},
        headers={"Cache-Control": "no-cache"},
    ).json()
    assert found["total"] == 1
    definition = found["entry"][0]["resource"]
    assert definition["code"] == "fetch-imaging"
    assert definition["resource"] == ["Patient"]
    names = {p["name"] for p in definition["parameter"]}
    assert {"identifier", "modality", "studyDate", "persist", "return"} <= names


def test_sidecar_stopped_hapi_answers_502_and_stays_healthy(
    stack: Stack, stack_sidecar: str, roster_patient: dict, fhir_http: requests.Session
) -> None:
    stack_sh("down", "sidecar")
    try:
        started = time.monotonic()
        answer = fhir_http.post(
            f"{stack.fhir_base}/Patient/{roster_patient['id']}/$fetch-imaging", timeout=120
        )
        elapsed = time.monotonic() - started
        assert answer.status_code in (502, 504), answer.text
        assert answer.json()["resourceType"] == "OperationOutcome"
        assert elapsed < 60  # FETCH_IMAGING_TIMEOUT_SECONDS of the local stack
        assert fhir_http.get(f"{stack.fhir_base}/metadata").status_code == 200
        assert fhir_http.get(f"{stack.fhir_base}/Patient/{roster_patient['id']}").ok
    finally:
        start_stack_sidecar()
