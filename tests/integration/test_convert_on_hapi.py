"""Issue 3 acceptance on the real HAPI: ``dicom-fhir convert`` output is valid FHIR R4 for
HAPI's validator, and a transaction bundle posted twice stores each study and patient once
(Patients by conditional create on the ``--patient-identifiers`` systems, issue 18).

The input is pydicom's CT_small/MR_small plus one generated study of a roster patient. The
generated study uses its own seed, so its UIDs differ from the sample roster other stack
tests load into the PACS (and, through the sync, into HAPI): the searches below are scoped
to this module's identifiers.

HAPI's validator has no terminology loaded (no SNOMED CT, LOINC or the DICOM value sets)
and the resources carry no narrative, so it reports warnings such as "CodeSystem is unknown
and can't be validated", "ValueSet ... not found" and dom-6; only errors and fatal issues
fail these tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from pydicom.data import get_testdata_file

from sidecar.samples.generator import generate_studies, sample_patients, write_files
from tests.conftest import ROOT, Stack

pytestmark = pytest.mark.stack

#: Not the roster's seed (0): own StudyInstanceUIDs, own ImagingStudy ids.
SEED = 3003
ROSTER_PATIENT = "P-2001"  # non-ASCII name, HOSP-A issuer
NO_CACHE = {"Cache-Control": "no-cache"}  # HAPI caches searches for 60 s
FAILING = ("error", "fatal")
#: Identifier systems for the header Patients (``--patient-identifiers``): pydicom's files
#: carry no IssuerOfPatientID (PatientID alone), the roster patient HOSP-A. Without them a
#: transaction leaves those patients out rather than invent their ids.
PLAIN_SYSTEM = "urn:example:test:convert:mrn"
HOSP_A_SYSTEM = "urn:example:test:convert:hosp-a"
HOSP_B_SYSTEM = "urn:example:test:convert:hosp-b"
MAPPINGS = ["--patient-identifiers", f"{PLAIN_SYSTEM},{HOSP_A_SYSTEM}|HOSP-A"]


@pytest.fixture(scope="module")
def dicom_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dicom")
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(get_testdata_file(name), folder / name)
    patient = next(p for p in sample_patients() if p.patient_id == ROSTER_PATIENT)
    datasets = [
        ds
        for _, instances in generate_studies(patients=[patient], instances_per_series=2, seed=SEED)
        for ds in instances
    ]
    write_files(datasets, folder / "generated")
    return folder


def convert(folder: Path, out: Path, *args: str, studies: int = 3) -> dict[str, Any]:
    """Run the real CLI (``python -m sidecar convert``) and return its Bundle."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sidecar",
            "convert",
            str(folder),
            "--out",
            str(out),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"studies: {studies}," in done.stderr, done.stderr
    return json.loads(out.read_text(encoding="utf-8"))


def resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type
    ]


def failing(issues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in issues if i.get("severity") in FAILING]


def describe(issues: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  {i.get('severity')} {i.get('code')}: {i.get('diagnostics')} "
        f"@ {i.get('expression') or i.get('location')}"
        for i in issues
    )


def validate(session: requests.Session, fhir_base: str, resource: dict[str, Any]) -> list:
    """HAPI's ``$validate`` on the resource's type; returns the OperationOutcome's issues."""
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": resource}],
    }
    url = f"{fhir_base}/{resource['resourceType']}/$validate"
    response = session.post(url, json=parameters, timeout=300)
    # HAPI answers 200, or 412 when the outcome holds errors
    assert response.status_code in (200, 412), response.text[:4000]
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome", response.text[:4000]
    return outcome.get("issue", [])


def count(session: requests.Session, fhir_base: str, query: str) -> int:
    response = session.get(f"{fhir_base}/{query}&_summary=count", headers=NO_CACHE, timeout=60)
    response.raise_for_status()
    return response.json()["total"]


def post_transaction(session: requests.Session, fhir_base: str, bundle: dict) -> list[dict]:
    response = session.post(fhir_base, json=bundle, timeout=300)
    assert response.status_code == 200, response.text[:4000]
    reply = response.json()
    assert reply["type"] == "transaction-response"
    assert len(reply["entry"]) == len(bundle["entry"])
    return [e["response"] for e in reply["entry"]]


def unversioned(location: str) -> str:
    """``Patient/12/_history/1`` -> ``Patient/12``."""
    return location.split("/_history/")[0]


def without_meta(resource: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("meta", *keys)}


# --------------------------------------------------------------------------------------------
# 1. HAPI's validator accepts the converted resources
# --------------------------------------------------------------------------------------------


def test_converted_resources_pass_hapi_validation(
    stack: Stack, fhir_http: requests.Session, dicom_folder: Path, tmp_path: Path
) -> None:
    bundle = convert(dicom_folder, tmp_path / "bundle.json", "--timezone", "Europe/Zurich")
    studies, patients = resources(bundle, "ImagingStudy"), resources(bundle, "Patient")
    assert len(studies) == 3 and len(patients) == 3

    problems, seen = [], []
    for resource in [*patients, *studies]:
        issues = validate(fhir_http, stack.fhir_base, resource)
        label = f"{resource['resourceType']}/{resource.get('id', '(no id)')}"
        seen.append(f"{label}:\n{describe(issues)}")
        if failing(issues):
            problems.append(f"{label}:\n{describe(failing(issues))}")
    print("\n".join(seen))  # every issue, shown with -s or on failure
    assert not problems, "HAPI $validate reported errors:\n" + "\n".join(problems)


@pytest.mark.parametrize("patient", [False, True], ids=["header-patients", "given-patient"])
def test_transaction_bundle_passes_hapi_bundle_validation(
    stack: Stack, fhir_http: requests.Session, dicom_folder: Path, tmp_path: Path, patient: bool
) -> None:
    args = ["--bundle", "transaction", *(["--patient", "Patient/any"] if patient else MAPPINGS)]
    bundle = convert(dicom_folder, tmp_path / "bundle.json", *args)
    response = fhir_http.post(f"{stack.fhir_base}/Bundle/$validate", json=bundle, timeout=300)
    assert response.status_code in (200, 412), response.text[:4000]
    issues = response.json().get("issue", [])
    assert not failing(issues), "Bundle $validate reported errors:\n" + describe(failing(issues))


# --------------------------------------------------------------------------------------------
# 2. A transaction posted twice stores one ImagingStudy per study, one Patient per patient
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("patient", [False, True], ids=["header-patients", "given-patient"])
def test_transaction_posted_twice_stores_each_study_once(
    clean_fhir: Stack,
    fhir_http: requests.Session,
    dicom_folder: Path,
    tmp_path: Path,
    patient: bool,
) -> None:
    base = clean_fhir.fhir_base
    args = ["--bundle", "transaction", "--timezone", "Europe/Zurich"]
    given = None
    if patient:
        created = fhir_http.post(
            f"{base}/Patient",
            json={
                "resourceType": "Patient",
                "identifier": [{"system": "urn:example:test:convert", "value": "given-1"}],
            },
            timeout=60,
        )
        assert created.status_code == 201, created.text[:2000]
        given = f"Patient/{created.json()['id']}"
        args += ["--patient", given]
    else:
        args += MAPPINGS
    bundle = convert(dicom_folder, tmp_path / "bundle.json", *args)
    studies = resources(bundle, "ImagingStudy")
    patient_entries = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert len(studies) == 3
    assert len(patient_entries) == (0 if patient else 3)

    first = post_transaction(fhir_http, base, bundle)
    second = post_transaction(fhir_http, base, bundle)
    for entry, one, two in zip(bundle["entry"], first, second, strict=True):
        label = entry["request"]["url"]
        assert one["status"].startswith("201"), (label, one)  # clean server: all new
        assert two["status"].startswith("200"), (label, two)  # nothing created again...
        assert two["location"] == one["location"], (label, one, two)  # ...nor a new version

    # where the bundle's Patients landed (urn:uuid fullUrl -> Patient/<server id>)
    landed = {
        entry["fullUrl"]: unversioned(response["location"])
        for entry, response in zip(bundle["entry"], first, strict=True)
        if entry["resource"]["resourceType"] == "Patient"
    }
    for entry in patient_entries:  # conditional creates: never an id made up by convert
        assert entry["request"]["method"] == "POST" and "id" not in entry["resource"]
        query = entry["request"]["ifNoneExist"]
        assert count(fhir_http, base, f"Patient?{query}") == 1, entry["request"]
        stored = fhir_http.get(f"{base}/{landed[entry['fullUrl']]}", timeout=60).json()
        assert without_meta(stored, "id") == without_meta(entry["resource"], "id")
    if given:
        assert count(fhir_http, base, "Patient?identifier=urn:example:test:convert|given-1") == 1

    for study in studies:
        uid = study["identifier"][0]["value"]
        assert study["identifier"][0]["system"] == "urn:dicom:uid" and uid.startswith("urn:oid:")
        assert count(fhir_http, base, f"ImagingStudy?identifier=urn:dicom:uid|{uid}") == 1, uid
        stored = fhir_http.get(f"{base}/ImagingStudy/{study['id']}", timeout=60).json()
        subject = study["subject"]["reference"]
        expected = {**study, "subject": {"reference": given or landed[subject]}}
        assert without_meta(stored) == expected


def test_same_patient_id_under_two_issuers_stays_two_patients(
    clean_fhir: Stack, fhir_http: requests.Session, tmp_path: Path
) -> None:
    """P-SAME under HOSP-A and HOSP-B (issuers that are no URI) are two people: each issuer
    mapped to its own identifier system, the transaction must not merge them into one
    Patient, on either post."""
    base = clean_fhir.fhir_base
    same = [p for p in sample_patients() if p.patient_id == "P-SAME"]
    assert {p.issuer for p in same} == {"HOSP-A", "HOSP-B"}
    studies = generate_studies(patients=same, series_per_study=1, instances_per_series=1, seed=SEED)
    write_files([ds for _, instances in studies for ds in instances], tmp_path / "dicom")
    mappings = f"{HOSP_A_SYSTEM}|HOSP-A,{HOSP_B_SYSTEM}|HOSP-B"
    args = ["--bundle", "transaction", "--patient-identifiers", mappings]
    bundle = convert(tmp_path / "dicom", tmp_path / "bundle.json", *args, studies=2)

    post_transaction(fhir_http, base, bundle)
    post_transaction(fhir_http, base, bundle)
    for system in (HOSP_A_SYSTEM, HOSP_B_SYSTEM):
        assert count(fhir_http, base, f"Patient?identifier={system}|P-SAME") == 1, system
    given_names = {}
    for study in resources(bundle, "ImagingStudy"):
        stored = fhir_http.get(f"{base}/ImagingStudy/{study['id']}", timeout=60).json()
        reference = stored["subject"]["reference"]
        subject = fhir_http.get(f"{base}/{reference}", timeout=60).json()
        given_names[reference] = subject["name"][0]["given"][0]
    assert sorted(given_names.values()) == ["Alpha", "Beta"], given_names
