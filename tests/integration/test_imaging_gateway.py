"""Issue 19, item 3: the imaging gateway on the REAL stack (Keycloak, HAPI, Orthanc).

Two patients in PACS main: A with study SA, B with study SB, and one StudyInstanceUID U
filed under both (A's series UA, B's series UB). FHIR holds their ImagingStudies as the
sidecar wrote them (U once, A's: the sidecar never moves a study one UID names for two
patients). Eight callers try every WADO-RS and QIDO-RS path of the Endpoint: patient A's
token never gets a byte of B's imaging, U's other part included, whatever the path's
spelling; the invalid ones get a 401 with ``WWW-Authenticate``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from tests.conftest import Stack, token_claims
from tests.integration.test_fhir_authorization import resigned_with_another_key

pytestmark = pytest.mark.stack

MRN = "urn:example:mrn:hosp-a"
INVALID = ("expired", "another key", "another audience", "none")


def instance(pid: str, study: str, series: str, number: int) -> bytes:
    """A small secondary-capture instance with non-blank pixels, as Orthanc stores it."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID, ds.IssuerOfPatientID, ds.PatientName = pid, "HOSP-A", "Gateway^Test"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.StudyDate, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "20240101", "OT", 1, number
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = (np.arange(256, dtype=np.uint8) * (number + 1)).tobytes()
    out = DicomBytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


class World:
    def __init__(self, stack: Stack, gateway: str) -> None:
        self.stack, self.gateway = stack, gateway
        suffix = uuid.uuid4().hex[:8]
        self.pid_a, self.pid_b = f"GW-A-{suffix}", f"GW-B-{suffix}"
        self.sa, self.sb, self.u = generate_uid(), generate_uid(), generate_uid()
        self.series = {name: generate_uid() for name in ("SA", "SB", "UA", "UB")}
        self.instances: dict[str, list[str]] = {}
        self.tokens: dict[str, str | None] = {}

    def load(self) -> None:
        pacs = self.stack.pacs["main"]
        plan = [
            (self.pid_a, self.sa, "SA"),
            (self.pid_b, self.sb, "SB"),
            (self.pid_a, self.u, "UA"),
            (self.pid_b, self.u, "UB"),
        ]
        for pid, study, name in plan:
            for number in (1, 2):
                body = instance(pid, study, self.series[name], number)
                answer = requests.post(
                    f"{pacs.base_url}/instances", data=body, auth=pacs.auth, timeout=30
                )
                answer.raise_for_status()
                self.instances.setdefault(name, []).append(answer.json()["ID"])

    def call(
        self, kind: str, path: str, *, method: str = "GET", **headers: str
    ) -> requests.Response:
        token = self.tokens[kind]
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, f"{self.gateway}/{path}", headers=headers, timeout=60)

    def sop(self, kind: str, name: str) -> str:
        """The SOPInstanceUID of the first instance of series ``name`` (through the gateway
        as ``kind``: QIDO, so only a visible one is found)."""
        study = self.u if name in ("UA", "UB") else {"SA": self.sa, "SB": self.sb}[name]
        rows = self.call(kind, f"studies/{study}/series/{self.series[name]}/instances").json()
        return rows[0]["00080018"]["Value"][0]


@pytest.fixture(scope="module")
def world(stack, sidecar, fhir_http) -> Iterator[World]:
    world = World(stack, f"{sidecar.url}/dicomweb/main")
    world.load()
    ids = {}
    for name, pid in (("a", world.pid_a), ("b", world.pid_b)):
        patient = {"resourceType": "Patient", "identifier": [{"system": MRN, "value": pid}]}
        created = fhir_http.post(f"{stack.fhir_base}/Patient", json=patient)
        created.raise_for_status()
        ids[name] = created.json()["id"]
        fetched = sidecar.fetch(ids[name])
        assert fetched.status_code == 200, fetched.text
    world.tokens = {
        "patient A": stack.token("--patient", f"Patient/{ids['a']}"),
        "patient B": stack.token("--patient", f"Patient/{ids['b']}"),
        "practitioner": stack.token("--user", "practitioner"),
        "system": stack.token("--system"),
        "expired": stack.token("--client", "test-short-lived", "--patient", f"Patient/{ids['a']}"),
        "another audience": stack.token(
            "--client", "test-other-audience", "--patient", f"Patient/{ids['a']}"
        ),
        "none": None,
    }
    world.tokens["another key"] = resigned_with_another_key(world.tokens["patient A"])
    # past the short-lived token's expiry and the gateway's leeway (5 s), with a margin
    time.sleep(max(0.0, token_claims(world.tokens["expired"])["exp"] + 5 + 2 - time.time()))
    yield world


def a_paths(world: World) -> list[str]:
    """Every kind of resource of study SA (A's own)."""
    sa, se = world.sa, world.series["SA"]
    i = world.sop("patient A", "SA")
    base = f"studies/{sa}/series/{se}/instances/{i}"
    return [
        f"studies/{sa}",
        f"studies/{sa}/metadata",
        f"studies/{sa}/rendered",
        f"studies/{sa}/thumbnail",
        f"studies/{sa}/series/{se}",
        f"studies/{sa}/series/{se}/metadata",
        f"studies/{sa}/series/{se}/thumbnail",
        base,
        f"{base}/metadata",
        f"{base}/rendered",
        f"{base}/thumbnail",
        f"{base}/frames/1",
        f"{base}/frames/1/rendered",
        f"{base}/bulk/7fe00010",
        f"studies/{sa}/series",
        f"studies/{sa}/series/{se}/instances",
    ]


def test_patient_a_reads_every_resource_of_its_own_study(world):
    for path in a_paths(world):
        answer = world.call("patient A", path)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])
        assert answer.headers["Cache-Control"].startswith("private")
        assert answer.content
        if path.endswith("metadata") or path.endswith(("/series", "/instances")):
            # DICOM JSON: at least the instance of A's study, whatever the level (Orthanc's
            # study-level metadata carries no IssuerOfPatientID: it answered [] once)
            assert answer.json(), path


@pytest.mark.parametrize("kind", INVALID)
def test_an_invalid_or_missing_token_is_a_401_with_a_challenge_everywhere(world, kind):
    for path in [*a_paths(world), "studies", "series", "instances"]:
        answer = world.call(kind, path)
        assert answer.status_code == 401, (kind, path, answer.status_code)
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert b"\x00" not in answer.content and len(answer.content) < 2000


def test_patient_a_never_gets_a_byte_of_patient_b(world):
    sb, se_b = world.sb, world.series["SB"]
    b_instance = world.sop("patient B", "SB")
    u, ub = world.u, world.series["UB"]
    b_paths = [
        f"studies/{sb}",
        f"studies/{sb}/metadata",
        f"studies/{sb}/thumbnail",
        f"studies/{sb}/series/{se_b}",
        f"studies/{sb}/series/{se_b}/instances/{b_instance}",
        f"studies/{sb}/series/{se_b}/instances/{b_instance}/frames/1",
        f"studies/{sb}/series/{se_b}/instances/{b_instance}/bulk/7fe00010",
        f"studies/{sb}/series/{se_b}/instances/{b_instance}/metadata",
        f"studies/{sb}/series",
        f"studies/{sb}/series/{se_b}/instances",
        # B's part of the StudyInstanceUID both share, and the whole of it
        f"studies/{u}/series/{ub}",
        f"studies/{u}/series/{ub}/metadata",
        f"studies/{u}/series/{ub}/instances",
        f"studies/{u}",
        f"studies/{u}/metadata",
        f"studies/{u}/rendered",
        f"studies/{u}/thumbnail",
        # spellings that try to walk out of A's study into B's
        f"studies/{world.sa}/../{sb}",
        f"studies/{world.sa}/..%2F{sb}",
        f"studies/{world.sa}/%2e%2e/{sb}",
        f"studies%2F{sb}",
        f"studies/{sb}%00",
        f"studies/{sb}/",
    ]
    for path in b_paths:
        for method in ("GET", "HEAD"):
            answer = world.call("patient A", path, method=method, Range="bytes=0-99")
            assert answer.status_code == 404, (path, method, answer.status_code)
            assert not answer.content or b"OperationOutcome" in answer.content
    for path in ("studies", "series", "instances", f"studies/{u}/series", f"studies/{u}/instances"):
        text = world.call("patient A", f"{path}?limit=1000").text
        assert world.pid_b not in text and sb not in text and ub not in text, path


def test_patient_a_sees_its_own_part_of_the_shared_study_only(world):
    u, ua = world.u, world.series["UA"]
    series = world.call("patient A", f"studies/{u}/series").json()
    assert [s["0020000E"]["Value"][0] for s in series] == [ua]
    assert world.call("patient A", f"studies/{u}/series/{ua}").status_code == 200
    metadata = world.call("patient A", f"studies/{u}/series/{ua}/metadata").json()
    assert {m["00100020"]["Value"][0] for m in metadata} == {world.pid_a}


def test_patient_b_gets_nothing_of_a(world):
    for path in a_paths(world):
        assert world.call("patient B", path).status_code == 404, path


@pytest.mark.parametrize("kind", ["practitioner", "system"])
def test_practitioner_and_system_tokens_read_both(world, kind):
    for study in (world.sa, world.sb):
        assert world.call(kind, f"studies/{study}/series").status_code == 200


def test_a_search_of_all_studies_answers_only_the_callers(world):
    rows = world.call("patient A", "studies?limit=1000").json()
    uids = {r["0020000D"]["Value"][0] for r in rows}
    assert {world.sa, world.u} <= uids and world.sb not in uids
    assert {r["00100020"]["Value"][0] for r in rows} == {world.pid_a}
    urls = [r["00081190"]["Value"][0] for r in rows if "00081190" in r]
    assert urls and all(url.startswith(world.gateway) for url in urls)


def test_bulk_data_urls_point_at_the_gateway_and_open_with_the_same_token(world):
    sa, se = world.sa, world.series["SA"]
    metadata = world.call("patient A", f"studies/{sa}/series/{se}/metadata").json()
    uri = metadata[0]["7FE00010"]["BulkDataURI"]
    assert uri.startswith(world.gateway)
    answer = requests.get(uri, headers={"Authorization": f"Bearer {world.tokens['patient A']}"})
    assert answer.status_code == 200 and len(answer.content) > 256
    assert requests.get(uri).status_code == 401


def test_head_and_range_pass_through(world):
    path = a_paths(world)[7]  # an instance
    head = world.call("patient A", path, method="HEAD")
    assert head.status_code == 200 and head.content == b""
    ranged = world.call("patient A", f"{path.rsplit('/', 0)[0]}/bulk/7fe00010", Range="bytes=0-9")
    assert ranged.status_code in (200, 206)  # Orthanc answers the whole; a PACS may honour it


def test_the_endpoint_says_it_needs_the_token(world, fhir_http, stack):
    endpoint = fhir_http.get(f"{stack.fhir_base}/Endpoint/dicomweb-main").json()
    assert endpoint["address"] == world.gateway
    (flag,) = endpoint["extension"]
    assert flag["url"].endswith("/requires-access-token") and flag["valueBoolean"] is True
    config = requests.get(f"{stack.fhir_base}/.well-known/smart-configuration").json()
    assert "smart-imaging-access" in json.dumps(config)
