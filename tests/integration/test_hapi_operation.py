"""Issue 5 acceptance: `$fetch-imaging` called on HAPI itself, relayed by our Java provider to
the stack's sidecar (STACK_SIDECAR_PORT), with the OperationDefinition published on HAPI."""

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
    found = fhir_http.post(
        f"{stack.fhir_base}/Patient/$fetch-imaging", params={"identifier": f"{MRN_A}|P-1001"}
    )
    assert found.status_code == 200, found.text
    studies = _studies(found.json())
    assert studies
    assert {s["subject"]["reference"] for s in studies} == {f"Patient/{roster_patient['id']}"}

    unknown = fhir_http.post(
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
    registrar = build_registrar(load_settings(stack.fhir_env()))
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


# --- the same parameters in every encoding, and FHIR answers only, through HAPI ---------------

FORM = {"Content-Type": "application/x-www-form-urlencoded", **FHIR_JSON}


def _stored_studies(fhir_http: requests.Session, fhir_base: str, patient_id: str) -> dict:
    """id -> stored ImagingStudy of this Patient, read past HAPI's 60 s search cache."""
    found = fhir_http.get(
        f"{fhir_base}/ImagingStudy",
        params={"subject": f"Patient/{patient_id}", "_count": 200},
        headers={"Cache-Control": "no-cache"},
    )
    assert found.status_code == 200, found.text
    return {e["resource"]["id"]: e["resource"] for e in found.json().get("entry", [])}


def _versions(studies: dict) -> dict:
    return {study_id: study["meta"]["versionId"] for study_id, study in studies.items()}


def test_form_body_persist_false_through_hapi_writes_nothing(
    stack: Stack, stack_sidecar: str, roster_patient: dict, fhir_http: requests.Session
) -> None:
    """Tomcat consumes a form body when HAPI reads the parameter map (no query string); the
    provider rebuilds it, so persist=false reaches the sidecar and nothing is written."""
    patient_id = roster_patient["id"]
    url = f"{stack.fhir_base}/Patient/{patient_id}/$fetch-imaging"

    dry = requests.post(
        url, data="persist=false", headers={**FORM, **stack.auth_headers()}, timeout=120
    )
    assert dry.status_code == 200, dry.text
    assert _studies(dry.json()), "the dry run maps the patient's studies"
    assert _stored_studies(fhir_http, stack.fhir_base, patient_id) == {}  # none written

    # with stored studies, one of them changed: a writing fetch would put it back
    assert fhir_http.post(url, timeout=120).status_code == 200
    stored = _stored_studies(fhir_http, stack.fhir_base, patient_id)
    assert stored
    study_id, study = next(iter(sorted(stored.items())))
    changed = {**study, "description": "changed by the test"}
    changed.pop("meta", None)
    put = fhir_http.put(f"{stack.fhir_base}/ImagingStudy/{study_id}", json=changed)
    assert put.status_code == 200, put.text
    before = _versions(_stored_studies(fhir_http, stack.fhir_base, patient_id))

    dry = requests.post(
        url, data="persist=false", headers={**FORM, **stack.auth_headers()}, timeout=120
    )
    assert dry.status_code == 200, dry.text
    after = _stored_studies(fhir_http, stack.fhir_base, patient_id)
    assert _versions(after) == before
    assert after[study_id]["description"] == "changed by the test"


def test_form_body_detail_zzz_through_hapi_is_the_sidecars_400(
    stack: Stack, stack_sidecar: str, roster_patient: dict
) -> None:
    answer = requests.post(
        f"{stack.fhir_base}/Patient/{roster_patient['id']}/$fetch-imaging",
        data="persist=false&detail=zzz",
        headers={**FORM, **stack.auth_headers()},
        timeout=120,
    )
    assert answer.status_code == 400, answer.text
    assert answer.headers["Content-Type"].startswith("application/fhir+json")
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "invalid"
    assert "detail" in outcome["issue"][0]["diagnostics"]


def test_modality_list_through_hapi_is_not_refused_by_hapi(
    stack: Stack, stack_sidecar: str, roster_patient: dict
) -> None:
    """HAPI used to split modality=CT,MR itself and refuse it (HAPI-1962); commas mean OR."""
    answer = requests.get(
        f"{stack.fhir_base}/Patient/{roster_patient['id']}/$fetch-imaging",
        params={"modality": "CT,MR", "persist": "false"},
        headers={**FHIR_JSON, **stack.auth_headers()},
        timeout=120,
    )
    assert "HAPI-1962" not in answer.text
    assert answer.status_code == 200, answer.text
    studies = _studies(answer.json())
    assert studies  # P-1001 has a CT study (and a CR one, which must not be returned)
    for study in studies:
        assert {m["code"] for m in study.get("modality", [])} & {"CT", "MR"}, study["id"]


def test_20kb_query_through_hapi_is_an_operation_outcome(
    stack: Stack, roster_patient: dict
) -> None:
    answer = requests.get(
        f"{stack.fhir_base}/Patient/{roster_patient['id']}/$fetch-imaging?modality="
        + "CT," * 6800
        + "MR&persist=false",
        headers={**FHIR_JSON, **stack.auth_headers()},
        timeout=60,
    )
    assert answer.status_code == 414, answer.text[:300]
    assert answer.headers["Content-Type"].startswith("application/fhir+json")
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "too-long"
