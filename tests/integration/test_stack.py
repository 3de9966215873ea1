"""Issue 2 acceptance: the real local stack (HAPI FHIR R4 + Orthanc DICOMweb) behaves."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pydicom
import pytest
import requests

from tests.conftest import ROOT, STACK_SH, Stack

pytestmark = pytest.mark.stack


def test_hapi_metadata_is_fhir_r4(stack: Stack, fhir_http: requests.Session) -> None:
    metadata = fhir_http.get(f"{stack.fhir_base}/metadata").json()
    assert metadata["resourceType"] == "CapabilityStatement"
    assert metadata["fhirVersion"] == "4.0.1"


def test_patient_round_trips(stack: Stack, fhir_http: requests.Session) -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test:mrn", "value": f"rt-{uuid.uuid4().hex[:8]}"}],
        "name": [{"family": "Round", "given": ["Trip"]}],
        "birthDate": "1970-01-02",
    }
    created = fhir_http.post(f"{stack.fhir_base}/Patient", json=patient)
    assert created.status_code == 201, created.text
    read = fhir_http.get(f"{stack.fhir_base}/Patient/{created.json()['id']}").json()
    for key in ("identifier", "name", "birthDate"):
        assert read[key] == patient[key]


def test_transaction_with_conditional_update_commits(
    stack: Stack, fhir_http: requests.Session
) -> None:
    value = f"tx-{uuid.uuid4().hex[:8]}"
    url = f"Patient?identifier=urn:test:mrn|{value}"

    def transaction(family: str) -> dict:
        entry = {
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:test:mrn", "value": value}],
                "name": [{"family": family}],
            },
            "request": {"method": "PUT", "url": url},
        }
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
        response = fhir_http.post(stack.fhir_base, json=bundle)
        assert response.status_code == 200, response.text
        return response.json()["entry"][0]["response"]

    first, second = transaction("First"), transaction("Second")
    assert first["status"].startswith("201")
    assert second["status"].startswith("200")
    assert first["location"].split("/_history")[0] == second["location"].split("/_history")[0]
    found = fhir_http.get(f"{stack.fhir_base}/{url}").json()
    assert found["total"] == 1
    assert found["entry"][0]["resource"]["name"][0]["family"] == "Second"


class _Receiver(BaseHTTPRequestHandler):
    received: queue.Queue

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.received.put((self.command, self.path, dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_POST = do_DELETE = _record

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


def test_rest_hook_subscription_delivers_patient_update(
    stack: Stack, fhir_http: requests.Session
) -> None:
    received: queue.Queue = queue.Queue()
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    subscription_id = f"stack-test-{uuid.uuid4().hex[:8]}"
    endpoint = f"http://127.0.0.1:{server.server_port}/notify"
    try:
        subscription = {
            "resourceType": "Subscription",
            "id": subscription_id,
            "status": "requested",
            "reason": "stack test",
            "criteria": "Patient?",
            "channel": {
                "type": "rest-hook",
                "endpoint": endpoint,
                "payload": "application/fhir+json",
                "header": ["X-Test: yes"],
            },
        }
        put = fhir_http.put(f"{stack.fhir_base}/Subscription/{subscription_id}", json=subscription)
        assert put.status_code in (200, 201), put.text
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline:
            status = fhir_http.get(f"{stack.fhir_base}/Subscription/{subscription_id}").json()
            status = status["status"]
            if status == "active":
                break
            time.sleep(0.5)
        assert status == "active"

        def next_delivery_of(patient_id: str, *, active: bool) -> tuple:
            """The first delivery for this Patient in this state (others' come and go)."""
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    delivery = received.get(timeout=1)
                except queue.Empty:
                    continue
                method, path, headers, body = delivery
                if path == f"/notify/Patient/{patient_id}":
                    resource = json.loads(body)
                    if resource.get("active") is active:
                        return method, headers, resource
            raise AssertionError(f"no delivery for Patient/{patient_id} (active={active})")

        patient = fhir_http.post(
            f"{stack.fhir_base}/Patient", json={"resourceType": "Patient", "active": True}
        ).json()
        method, headers, resource = next_delivery_of(patient["id"], active=True)
        assert method == "PUT"

        patient["active"] = False
        fhir_http.put(f"{stack.fhir_base}/Patient/{patient['id']}", json=patient)
        method, headers, resource = next_delivery_of(patient["id"], active=False)
        assert method == "PUT"
        assert resource["resourceType"] == "Patient"
        assert resource["id"] == patient["id"]
        assert headers.get("X-Test") == "yes"
    finally:
        # the receiver keeps answering (daemon thread) until the session ends: HAPI delivers
        # to a deleted Subscription until its registry reloads, and retries a dead endpoint
        fhir_http.delete(f"{stack.fhir_base}/Subscription/{subscription_id}")


def _orthanc_study_uids(pacs, patient_id: str, issuer: str | None) -> set[str]:
    """The studies Orthanc itself files under a patient (its REST API, not QIDO)."""
    query = {"PatientID": patient_id}
    found = requests.post(
        f"{pacs.base_url}/tools/find",
        json={"Level": "Study", "Query": query, "Expand": True, "CaseSensitive": True},
        auth=pacs.auth,
        timeout=30,
    ).json()
    uids = set()
    for study in found:
        tags = study["PatientMainDicomTags"]
        if tags.get("PatientID") != patient_id:
            continue
        if issuer is not None:
            instance = requests.get(
                f"{pacs.base_url}/studies/{study['ID']}/instances", auth=pacs.auth, timeout=30
            ).json()[0]
            simplified = requests.get(
                f"{pacs.base_url}/instances/{instance['ID']}/simplified-tags",
                auth=pacs.auth,
                timeout=30,
            ).json()
            if simplified.get("IssuerOfPatientID") != issuer:
                continue
        uids.add(study["MainDicomTags"]["StudyInstanceUID"])
    return uids


def test_orthanc_qido_answers_exactly_the_generated_studies(stack: Stack, sample_data) -> None:
    pacs = stack.pacs["main"]
    plain = [s for s in sample_data if re.fullmatch(r"[A-Za-z0-9._-]+", s.patient.patient_id)]
    assert len({s.patient.patient_id for s in plain}) >= 5, "the roster has plain patient IDs"
    for patient_id in sorted({s.patient.patient_id for s in plain}):
        expected = {s.study_uid for s in sample_data if s.patient.patient_id == patient_id}
        rows = requests.get(
            f"{pacs.dicomweb_url}/studies",
            params={"PatientID": patient_id},
            auth=pacs.auth,
            headers={"Accept": "application/dicom+json"},
            timeout=30,
        ).json()
        returned = {row["0020000D"]["Value"][0] for row in rows}
        assert returned == expected, patient_id
        assert returned == _orthanc_study_uids(pacs, patient_id, None)


def test_wado_rs_retrieves_the_same_instance(stack: Stack, sample_data) -> None:
    pacs = stack.pacs["main"]
    study = sample_data[0]
    instances = requests.get(
        f"{pacs.dicomweb_url}/studies/{study.study_uid}/instances",
        auth=pacs.auth,
        headers={"Accept": "application/dicom+json"},
        timeout=30,
    ).json()
    series_uid = instances[0]["0020000E"]["Value"][0]
    sop_uid = instances[0]["00080018"]["Value"][0]
    url = f"{pacs.dicomweb_url}/studies/{study.study_uid}/series/{series_uid}/instances/{sop_uid}"
    response = requests.get(
        url,
        auth=pacs.auth,
        headers={"Accept": 'multipart/related; type="application/dicom"'},
        timeout=60,
    )
    assert response.status_code == 200
    dataset = pydicom.dcmread(io.BytesIO(_single_part(response)), force=True)
    assert dataset.SOPInstanceUID == sop_uid
    assert dataset.StudyInstanceUID == study.study_uid


def _single_part(response: requests.Response) -> bytes:
    """The body of the one part of a multipart/related answer (PS3.18 8.6.1.2)."""
    content_type = response.headers["Content-Type"]
    boundary = next(
        p.split("=", 1)[1].strip('"')
        for p in content_type.split(";")
        if p.strip().startswith("boundary=")
    )
    body = response.content.split(b"--" + boundary.encode())[1]
    return body.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")


def _stack_pids() -> dict[str, str]:
    run = ROOT / "var" / "run"
    return {p.stem: p.read_text().strip() for p in run.glob("*.pid")}


def test_second_up_starts_nothing_twice(stack: Stack) -> None:
    before = _stack_pids()
    stack.run("up", "hapi", "pacs-main", "pacs-second")
    assert _stack_pids() == before
    assert {"hapi", "pacs-main", "pacs-second"} <= before.keys()


def test_down_leaves_no_process_of_ours(stack: Stack) -> None:
    env = {**os.environ, "STACK_PACS_PORT_THIRD": "8049"}

    def run(*args: str) -> None:
        subprocess.run(["bash", str(STACK_SH), *args], env=env, check=True, capture_output=True)

    run("up", "pacs-third")
    pid = int((ROOT / "var" / "run" / "pacs-third.pid").read_text())
    os.kill(pid, 0)  # alive
    run("down", "pacs-third")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (ROOT / "var" / "run" / "pacs-third.pid").exists()
    with pytest.raises(requests.ConnectionError):
        requests.get("http://127.0.0.1:8049/system", timeout=2)
