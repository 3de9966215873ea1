"""$fetch-imaging acceptance on the real stack (HAPI + two Orthanc PACS + gunicorn sidecar).

Truth about PACS content comes from Orthanc's own REST API, never from our QIDO code.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import requests
from dicomweb_client import DICOMwebClient

from tests.integration.conftest import (
    PACS_TIMEOUT_SECONDS,
    SYSTEMS,
    bundle_studies,
    orthanc_study_uids,
    study_uid,
)

pytestmark = pytest.mark.stack

ISOLATION_CASES = [
    ("12", "HOSP-A"),
    ("123", "HOSP-A"),
    ("abc", "HOSP-A"),
    ("ABC", "HOSP-A"),
    ("P-SAME", "HOSP-A"),
    ("P-SAME", "HOSP-B"),
    ("P-2001", "HOSP-A"),  # non-ASCII name
    ("P-NOISSUER", None),
]


def pid_of(patient_id: str, issuer: str | None) -> str:
    index = ISOLATION_CASES.index((patient_id, issuer))  # 'abc' and 'ABC' need distinct ids
    return f"t-iso-{index}"


@pytest.mark.parametrize(("patient_id", "issuer"), ISOLATION_CASES)
def test_fetch_returns_exactly_the_patients_studies(
    sidecar, fhir, sample_data, stack, patient_id, issuer
):
    fhir_id = pid_of(patient_id, issuer)
    fhir.put_patient(fhir_id, [(issuer, patient_id)])
    truth = orthanc_study_uids(stack.pacs["main"], patient_id, issuer)
    truth |= orthanc_study_uids(stack.pacs["second"], patient_id, issuer)
    assert truth, "the roster must give this patient studies"

    r = sidecar.fetch(fhir_id)
    assert r.status_code == 200, r.text
    studies = bundle_studies(r.json())
    assert {study_uid(s) for s in studies} == truth
    assert all(s["subject"]["reference"] == f"Patient/{fhir_id}" for s in studies)
    stored = fhir.studies_of(fhir_id)
    assert {study_uid(s) for s in stored} == truth
    assert all(s["status"] == "available" for s in stored)


def test_identifier_with_wildcard_is_refused(sidecar, fhir, sample_data, stack):
    fhir.put_patient("t-star", [("HOSP-A", "12*")])
    r = sidecar.fetch("t-star")
    assert r.status_code == 422
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "'*'" in outcome["issue"][0]["diagnostics"]
    assert fhir.search("ImagingStudy") == []


def test_type_level_by_identifier(sidecar, fhir, sample_data, stack):
    fhir.put_patient("t-type", [("HOSP-A", "123")])
    r = requests.post(
        f"{sidecar.url}/fhir/Patient/$fetch-imaging",
        params={"identifier": f"{SYSTEMS['HOSP-A']}|123"},
        headers={"Authorization": "Bearer test-bearer-token"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    truth = orthanc_study_uids(stack.pacs["main"], "123", "HOSP-A")
    assert {study_uid(s) for s in bundle_studies(r.json())} == truth


def test_three_fetches_keep_one_version_per_study(sidecar, fhir, sample_data, stack):
    fhir.put_patient("t-repeat", [("HOSP-A", "P-1001")])
    truth = orthanc_study_uids(stack.pacs["main"], "P-1001", "HOSP-A")

    def versions():
        resources = fhir.studies_of("t-repeat") + fhir.search("Endpoint")
        return {(r["resourceType"], r["id"]): r["meta"]["versionId"] for r in resources}

    assert sidecar.fetch("t-repeat").status_code == 200
    first = versions()
    for _ in range(2):
        r = sidecar.fetch("t-repeat")
        assert r.status_code == 200
        assert {s["meta"]["versionId"] for s in bundle_studies(r.json())} == {
            v for (t, _), v in first.items() if t == "ImagingStudy"
        }
    assert versions() == first
    stored = fhir.studies_of("t-repeat")
    assert sorted(study_uid(s) for s in stored) == sorted(truth)
    assert len(fhir.search("Endpoint")) == 1


def test_concurrent_fetches_leave_no_duplicates(sidecar, fhir, sample_data, stack):
    fhir.put_patient("t-conc", [("HOSP-A", "P-1002")])
    truth = orthanc_study_uids(stack.pacs["main"], "P-1002", "HOSP-A")
    barrier = threading.Barrier(3)
    statuses = []

    def run():
        barrier.wait()
        statuses.append(sidecar.fetch("t-conc").status_code)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200, 200, 200]
    stored = fhir.studies_of("t-conc")
    assert Counter(study_uid(s) for s in stored) == Counter(truth)
    for uid in truth:  # also no copy under another id
        assert len(fhir.search(f"ImagingStudy?identifier=urn:dicom:uid|urn:oid:{uid}")) == 1
    assert len(fhir.search("Endpoint")) == 1


def test_endpoint_and_uids_retrieve_the_instance(sidecar, fhir, sample_data, stack):
    fhir.put_patient("t-wado", [("HOSP-A", "P-1003")])
    bundle = sidecar.fetch("t-wado").json()
    study = bundle_studies(bundle)[0]
    endpoints = {
        f"Endpoint/{e['resource']['id']}": e["resource"]
        for e in bundle["entry"]
        if e["search"]["mode"] == "include"
    }
    endpoint = endpoints[study["endpoint"][0]["reference"]]  # the client's own step
    assert endpoint["connectionType"]["code"] == "dicom-wado-rs"
    series = study["series"][0]
    instance = series["instance"][0]
    # Endpoint.address is the sidecar's imaging gateway: the Patient's own token opens it
    assert endpoint["address"] in (f"{sidecar.url}/dicomweb/{name}" for name in stack.pacs)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {stack.token('--patient', 'Patient/t-wado')}"
    client = DICOMwebClient(endpoint["address"], session=session)
    dataset = client.retrieve_instance(study_uid(study), series["uid"], instance["uid"])
    assert dataset.SOPInstanceUID == instance["uid"]
    assert dataset.StudyInstanceUID == study_uid(study)


def test_persist_false_and_filters(sidecar, fhir, sample_data, stack):
    fhir.put_patient("t-filter", [("HOSP-A", "12")])
    all_studies = bundle_studies(sidecar.fetch("t-filter", {"persist": "false"}).json())
    assert all_studies and fhir.studies_of("t-filter") == []
    modality = all_studies[0]["modality"][0]["code"]
    r = sidecar.fetch("t-filter", {"modality": modality, "detail": "series"})
    assert r.status_code == 200
    picked = bundle_studies(r.json())
    assert picked and all(modality in {m["code"] for m in s["modality"]} for s in picked)
    assert all("instance" not in series for s in picked for series in s.get("series", []))


@pytest.mark.parametrize(
    ("headers", "status"),
    # a bearer token that is neither a configured one nor a valid SMART token: 401 (RFC 6750)
    [({}, 401), ({"X-Sidecar-Secret": "wrong"}, 403), ({"Authorization": "Bearer no"}, 401)],
)
def test_missing_or_wrong_credentials(sidecar, fhir, headers, status):
    fhir.put_patient("t-auth", [("HOSP-A", "12")])
    r = sidecar.fetch("t-auth", headers=headers)
    assert r.status_code == status
    assert r.json()["resourceType"] == "OperationOutcome"
    assert fhir.studies_of("t-auth") == []


def test_unknown_patient_and_bad_parameter(sidecar, fhir):
    r = sidecar.fetch("does-not-exist")
    assert r.status_code == 404 and r.json()["issue"][0]["code"] == "not-found"
    fhir.put_patient("t-bad", [("HOSP-A", "12")])
    r = sidecar.fetch("t-bad", {"studyDate": "sometime"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def test_no_mappable_identifier_is_422(sidecar, fhir):
    r = fhir.http.put(
        f"{fhir.base}/Patient/t-nomap",
        json={
            "resourceType": "Patient",
            "id": "t-nomap",
            "identifier": [{"system": "urn:unmapped", "value": "12"}],
        },
    )
    r.raise_for_status()
    assert sidecar.fetch("t-nomap").status_code == 422


def test_healthz_and_metrics(sidecar):
    health = requests.get(f"{sidecar.url}/healthz", timeout=30)
    assert health.status_code == 200, health.text
    assert set(health.json()["checks"]) == {"fhir", "pacs:main", "pacs:second"}
    metrics = requests.get(f"{sidecar.url}/metrics", timeout=10).text
    assert "sidecar_fetch_total" in metrics and "sidecar_qido_request_seconds" in metrics


def test_logs_carry_ids_not_names(sidecar, fhir, sample_data):
    fhir.put_patient("t-logs", [("HOSP-A", "P-2001")])
    assert sidecar.fetch("t-logs").status_code == 200
    text = sidecar.log_path.read_text(encoding="utf-8")
    assert '"patient_id": "t-logs"' in text
    assert "Müller" not in text and "Zoë" not in text


def wait_for_health(url: str, wanted, seconds: float = 15.0) -> requests.Response:
    """/healthz until ``wanted(answer)`` (a probe is shared for 5 s, so a change shows late)."""
    deadline = time.monotonic() + seconds
    while True:
        health = requests.get(f"{url}/healthz", timeout=30)
        if wanted(health) or time.monotonic() > deadline:
            return health
        time.sleep(0.5)


def test_pacs_stopped_gives_502_or_504_within_the_timeout(sidecar, fhir, sample_data, stack):
    fhir.put_patient("t-down", [("HOSP-A", "12")])
    stack.stop_pacs("main")
    try:
        started = time.monotonic()
        r = sidecar.fetch("t-down")
        elapsed = time.monotonic() - started
        assert r.status_code in (502, 504), r.text
        assert r.json()["resourceType"] == "OperationOutcome"
        assert elapsed < PACS_TIMEOUT_SECONDS + 2
        assert fhir.studies_of("t-down") == []  # nothing half-written
        # /healthz probes at most every 5 s (one probe for many callers): the next probe
        health = wait_for_health(sidecar.url, lambda h: h.status_code == 503)
        assert health.json()["checks"]["pacs:main"]["status"] == "down"
    finally:
        stack.start_pacs("main")


@pytest.fixture(scope="module")
def second_pacs_studies(stack, sample_data) -> dict[str, set[str]]:
    """P-1003 (HOSP-A) in both PACS: its roster study copied to PACS second, plus a study
    that only PACS second holds."""
    from sidecar.samples import generate_studies, load_into_orthanc, sample_patients

    patient = next(p for p in sample_patients() if p.patient_id == "P-1003")
    pacs = stack.pacs["second"]
    uids: dict[str, set[str]] = {"both": set(), "second_only": set()}
    for seed, kind in ((0, "both"), (7, "second_only")):
        for study, instances in generate_studies(patients=[patient], seed=seed):
            report = load_into_orthanc(instances, base_url=pacs.base_url, auth=pacs.auth)
            assert not report.failed
            uids[kind].add(study.study_uid)
    return uids


def test_fetch_unites_two_pacs_with_one_endpoint_each(sidecar, fhir, stack, second_pacs_studies):
    fhir.put_patient("t-two-pacs", [("HOSP-A", "P-1003")])
    in_main = orthanc_study_uids(stack.pacs["main"], "P-1003", "HOSP-A")
    in_second = orthanc_study_uids(stack.pacs["second"], "P-1003", "HOSP-A")
    assert second_pacs_studies["both"] <= in_main & in_second
    assert second_pacs_studies["second_only"] <= in_second - in_main

    r = sidecar.fetch("t-two-pacs")
    assert r.status_code == 200, r.text
    bundle = r.json()
    studies = {study_uid(s): s for s in bundle_studies(bundle)}
    assert set(studies) == in_main | in_second  # one ImagingStudy per study, none twice

    endpoints = {
        e["resource"]["id"]: e["resource"]["address"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Endpoint"
    }
    # one Endpoint per PACS: the sidecar's gateway for each
    assert endpoints["dicomweb-main"] == f"{sidecar.url}/dicomweb/main"
    assert endpoints["dicomweb-second"] == f"{sidecar.url}/dicomweb/second"
    for uid, study in studies.items():
        expected = {
            f"Endpoint/dicomweb-{name}"
            for name, held in (("main", in_main), ("second", in_second))
            if uid in held
        }
        assert {ref["reference"] for ref in study["endpoint"]} == expected, uid


def test_a_study_split_over_two_pacs_holds_both_parts_and_loses_a_deleted_one(sidecar, fhir, stack):
    """One StudyInstanceUID, one series in Orthanc main and another only in Orthanc second:
    one ImagingStudy with both series; the second's series deleted there, it goes."""
    import copy
    import uuid

    from pydicom.uid import generate_uid

    from sidecar.samples.loader import load_into_orthanc
    from tests.integration.conftest_sync import smallest_sample_instance

    tag = uuid.uuid4().hex
    study = generate_uid(entropy_srcs=["split-study", tag])
    series = {}
    for name in ("main", "second"):
        ds = copy.deepcopy(smallest_sample_instance())
        ds.PatientID, ds.IssuerOfPatientID = "P-1003", "HOSP-A"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series[name] = generate_uid(entropy_srcs=["split", name, tag])
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["split-sop", name, tag])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        pacs = stack.pacs[name]
        assert not load_into_orthanc([ds], base_url=pacs.base_url, auth=pacs.auth).failed
    fhir.put_patient("t-split", [("HOSP-A", "P-1003")])
    pacs = stack.pacs["second"]
    try:

        def stored_series() -> set[str]:
            r = sidecar.fetch("t-split")
            assert r.status_code == 200, r.text
            (found,) = [s for s in bundle_studies(r.json()) if study_uid(s) == study]
            assert found["numberOfSeries"] == len(found["series"])
            return {s["uid"] for s in found["series"]}

        assert stored_series() == {series["main"], series["second"]}
        assert stored_series() == {series["main"], series["second"]}  # and again (steady state)
        found = requests.post(
            f"{pacs.base_url}/tools/lookup", data=series["second"], auth=pacs.auth, timeout=30
        ).json()
        (gone,) = [f for f in found if f["Type"] == "Series"]
        requests.delete(f"{pacs.base_url}/series/{gone['ID']}", auth=pacs.auth, timeout=30)
        assert stored_series() == {series["main"]}
    finally:
        for name in ("main", "second"):
            p = stack.pacs[name]
            hits = requests.post(
                f"{p.base_url}/tools/lookup", data=study, auth=p.auth, timeout=30
            ).json()
            for hit in (h for h in hits if h["Type"] == "Study"):
                requests.delete(f"{p.base_url}/studies/{hit['ID']}", auth=p.auth, timeout=30)
