"""Trust on the real stack, on both paths (the sidecar directly, and HAPI's relay): no study
on the wrong patient, no 500 for any input, nothing written by a refused request.

Every hostile case asserts the status, that the answer is an OperationOutcome, and that
nothing was written or moved (ImagingStudy versions and subjects before and after).
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from tests.integration.conftest import SYSTEMS, bundle_studies

pytestmark = pytest.mark.stack

MRN_A = SYSTEMS["HOSP-A"]
ROSTER_PID = "P-1001"  # roster patient with studies in PACS main (HOSP-A)
PATHS = ("direct", "hapi")


class Caller:
    """``$fetch-imaging`` on one path: the sidecar (relay secret) or HAPI (its provider)."""

    def __init__(self, path: str, sidecar, stack) -> None:
        self.path = path
        self.stack = stack
        if path == "direct":
            self.base = f"{sidecar.url}/fhir"
            self.headers = {"X-Sidecar-Secret": sidecar.secret}
        else:
            self.base = stack.fhir_base
            self.headers = {}

    def call(self, patient_id: str | None, method: str = "POST", **kwargs) -> requests.Response:
        target = f"Patient/{patient_id}/$fetch-imaging" if patient_id else "Patient/$fetch-imaging"
        # through HAPI: a system token (HAPI enforces SMART tokens), renewed as needed
        auth = self.stack.auth_headers() if self.path != "direct" else {}
        headers = {**self.headers, **auth, **kwargs.pop("headers", {})}
        return requests.request(
            method, f"{self.base}/{target}", headers=headers, timeout=120, **kwargs
        )


@pytest.fixture(params=PATHS)
def caller(request, sidecar, stack, stack_sidecar) -> Caller:
    return Caller(request.param, sidecar, stack)


def put_patient(fhir, patient_id: str, value: str, **extra) -> None:
    body = {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [{"system": MRN_A, "value": value}],
        **extra,
    }
    fhir.http.put(f"{fhir.base}/Patient/{patient_id}", json=body).raise_for_status()


def stored_state(fhir) -> dict[str, tuple[str, str, str]]:
    """Every ImagingStudy: id -> (versionId, subject, status)."""
    return {
        s["id"]: (s["meta"]["versionId"], s["subject"]["reference"], s["status"])
        for s in fhir.search("ImagingStudy?_count=200")
    }


def assert_outcome(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"] and all(i["severity"] in ("error", "fatal") for i in body["issue"])
    return body


@pytest.fixture
def owner(fhir, sample_data, sidecar) -> str:
    """Patient A, the first to carry the roster MRN, with its studies already stored."""
    patient_id = f"trust-a-{uuid.uuid4().hex[:8]}"
    put_patient(fhir, patient_id, ROSTER_PID)
    r = sidecar.fetch(patient_id)
    assert r.status_code == 200, r.text
    assert bundle_studies(r.json())
    return patient_id


# -- duplicate identity: a conflict, never a move ---------------------------------------------


@pytest.mark.parametrize("twin_value", [ROSTER_PID, f"{ROSTER_PID} "])
def test_a_second_patient_with_the_same_mrn_gets_409_and_moves_nothing(
    caller, fhir, owner, twin_value
):
    before = stored_state(fhir)
    assert {subject for _, subject, _ in before.values()} == {f"Patient/{owner}"}
    twin = f"trust-b-{uuid.uuid4().hex[:8]}"
    put_patient(fhir, twin, twin_value)
    for patient_id in (twin, owner):
        body = assert_outcome(caller.call(patient_id), 409)
        text = body["issue"][0]["diagnostics"]
        assert f"Patient/{owner}" in text and f"Patient/{twin}" in text
        assert body["issue"][0]["code"] == "multiple-matches"
        again = caller.call(patient_id, params={"persist": "false"})
        assert_outcome(again, 409)  # no answer for either: it would show A's studies to B
    assert stored_state(fhir) == before


def test_an_issuerless_identifier_of_the_same_patientid_is_a_conflict(caller, fhir, owner):
    """`urn:example:mrn:no-issuer` maps to PatientID alone: it takes P-1001's studies under
    any issuer, so it claims the same PACS patient as `hosp-a|P-1001`."""
    before = stored_state(fhir)
    twin = f"trust-plain-{uuid.uuid4().hex[:8]}"
    body = {
        "resourceType": "Patient",
        "id": twin,
        "identifier": [{"system": SYSTEMS[None], "value": ROSTER_PID}],
    }
    fhir.http.put(f"{fhir.base}/Patient/{twin}", json=body).raise_for_status()
    for patient_id in (twin, owner):
        assert_outcome(caller.call(patient_id), 409)
    assert stored_state(fhir) == before


def test_head_and_options_write_nothing(caller, fhir, owner):
    before = stored_state(fhir)
    fhir.http.delete(f"{fhir.base}/ImagingStudy/{next(iter(before))}")
    after_delete = stored_state(fhir)
    for method in ("HEAD", "OPTIONS"):
        r = caller.call(owner, method)
        assert 400 <= r.status_code < 500, (method, r.status_code)
    assert stored_state(fhir) == after_delete  # nothing re-created


def test_a_merged_away_record_is_no_conflict(caller, fhir, owner):
    old = f"trust-old-{uuid.uuid4().hex[:8]}"
    link = [{"type": "replaced-by", "other": {"reference": f"Patient/{owner}"}}]
    put_patient(fhir, old, ROSTER_PID, active=False, link=link)
    r = caller.call(owner)
    assert r.status_code == 200, r.text


# -- exact patient resolution at type level -----------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        f"{ROSTER_PID}\x01",
        f"{ROSTER_PID}\t",
        f"{ROSTER_PID}\n",
        f"{ROSTER_PID},",
        f"NOPE,{ROSTER_PID}",
        f" {ROSTER_PID}",
        f"{ROSTER_PID} ",
        f"{ROSTER_PID}|x",
        f"{ROSTER_PID}\\",
        f"{ROSTER_PID}$",
    ],
)
def test_a_hostile_identifier_never_resolves_another_patient(caller, fhir, owner, value):
    before = stored_state(fhir)
    r = caller.call(None, params={"identifier": f"{MRN_A}|{value}"})
    assert_outcome(r, 400)
    assert stored_state(fhir) == before


def test_an_exact_identifier_resolves_its_patient(caller, fhir, owner):
    r = caller.call(None, params={"identifier": f"{MRN_A}|{ROSTER_PID}"})
    assert r.status_code == 200, r.text
    assert {s["subject"]["reference"] for s in bundle_studies(r.json())} == {f"Patient/{owner}"}


# -- detail shapes the answer, never the stored study --------------------------------------------


def test_detail_never_rewrites_the_stored_study(caller, fhir, owner):
    before = stored_state(fhir)
    full = {s["id"]: s for s in fhir.search("ImagingStudy?_count=200")}
    for detail in ("study", "series", "study", "instance", "series"):
        r = caller.call(owner, params={"detail": detail})
        assert r.status_code == 200, r.text
        for study in bundle_studies(r.json()):
            assert ("series" in study) == (detail != "study")
            if detail == "series":
                assert all("instance" not in s for s in study["series"])
    assert stored_state(fhir) == before
    after = {s["id"]: s for s in fhir.search("ImagingStudy?_count=200")}
    assert {k: v.get("series") for k, v in after.items()} == {
        k: v.get("series") for k, v in full.items()
    }


# -- writes need POST ---------------------------------------------------------------------------


def test_a_get_that_would_write_is_405_and_a_get_with_persist_false_reads(caller, fhir, owner):
    before = stored_state(fhir)
    for params in ({}, {"persist": "true"}):
        body = assert_outcome(caller.call(owner, "GET", params=params), 405)
        assert "POST" in body["issue"][0]["diagnostics"]
    r = caller.call(owner, "GET", params={"persist": "false"})
    assert r.status_code == 200 and bundle_studies(r.json())
    assert stored_state(fhir) == before


@pytest.mark.parametrize(
    ("data", "status"),
    [({"persist": "false"}, 200), ({"detail": "zzz"}, 400), ({"persist": "maybe"}, 400)],
)
def test_a_form_body_means_what_the_query_string_means(caller, fhir, sample_data, data, status):
    """On a Patient with nothing stored yet: a write would show."""
    fresh = f"trust-form-{uuid.uuid4().hex[:8]}"
    put_patient(fhir, fresh, ROSTER_PID)
    r = caller.call(fresh, data=data)  # application/x-www-form-urlencoded
    assert r.status_code == status, r.text[:300]
    if status != 200:
        assert_outcome(r, status)
    else:
        assert bundle_studies(r.json())
    assert stored_state(fhir) == {}


def test_a_modality_list_is_or_on_both_paths(caller, fhir, owner):
    r = caller.call(owner, params={"modality": "CT,MR", "persist": "false"}, method="GET")
    assert r.status_code == 200, r.text[:300]


# -- no 500 for any client input --------------------------------------------------------------

HOSTILE_QUERIES = [
    {"studyDate": "lt0001"},
    {"studyDate": "gt9999-12-31"},
    {"studyDate": "2020-02-30"},
    {"studyDate": "2020-01-01T25:00"},
    {"detail": "zzz"},
    {"persist": "1"},
    {"studyInstanceUid": "1.2.x"},
    {"accession": "A*"},
    {"modality": "ct"},
    {"nonsense": "1"},
]
HOSTILE_BODIES = [
    {"resourceType": "Parameters", "parameter": "persist=false"},
    {"resourceType": "Parameters", "parameter": {"name": "persist", "valueBoolean": False}},
    {"resourceType": "Parameters", "parameter": ["persist", "detail"]},
    {"resourceType": "Parameters", "parameter": [{"name": "persist", "valueBoolean": "false"}]},
    {"resourceType": "Parameters", "parameter": [{"name": "detail", "valueCode": 7}]},
    {"resourceType": "Parameters", "parameter": [{"name": "studyDate", "valueDate": []}]},
    {"resourceType": "Parameters", "parameter": [{"name": "persist"}]},
    {"resourceType": "Patient"},
    ["Parameters"],
]


@pytest.mark.parametrize("params", HOSTILE_QUERIES)
def test_hostile_query_values_are_400(caller, fhir, owner, params):
    before = stored_state(fhir)
    assert_outcome(caller.call(owner, params=params), 400)
    assert stored_state(fhir) == before


@pytest.mark.parametrize("body", HOSTILE_BODIES)
def test_hostile_parameters_bodies_are_400(caller, fhir, owner, body):
    before = stored_state(fhir)
    r = caller.call(owner, data=json.dumps(body), headers={"Content-Type": "application/fhir+json"})
    assert_outcome(r, 400)
    assert stored_state(fhir) == before


def test_deep_and_oversized_requests_are_operation_outcomes(caller, fhir, owner):
    before = stored_state(fhir)
    fhir_json = {"Content-Type": "application/fhir+json"}
    deep = "[" * 5000 + "]" * 5000
    r = caller.call(owner, data=deep, headers=fhir_json)
    assert_outcome(r, 400)
    big = json.dumps({"resourceType": "Parameters", "x": "a" * 200_000})
    r = caller.call(owner, data=big, headers=fhir_json)
    assert r.status_code in (400, 413) and r.json()["resourceType"] == "OperationOutcome"
    r = caller.call(owner, params={"accession": "A" * 20_000})
    assert r.status_code in (400, 414) and r.json()["resourceType"] == "OperationOutcome"
    r = caller.call(owner, headers={"X-Padding": "p" * 20_000})
    assert r.status_code in (400, 431) and r.json()["resourceType"] == "OperationOutcome"
    assert stored_state(fhir) == before
