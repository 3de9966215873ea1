"""bench/fetch: the sidecar's $fetch-imaging wall time against the irreducible HTTP work and
against a naive per-instance approach, for patients of 1, 10 and 100 studies
(3 series x 50 instances each, 16x16 pixels).

    python bench/fetch.py [--sizes 1,10,100] [--repeat 3] [--naive-max-studies 10]

Needs the local stack (deploy/local/stack.sh up hapi pacs-main). Generates and loads its own
data into PACS "main" (idempotent). Prints, per patient size:
- sidecar: the use case (in-process, its own pooled clients) fetching into an empty FHIR state
  (every study created) and again with nothing changed (steady state);
- floor: one study-level QIDO and one FHIR search, the least a steady-state fetch must do;
- inst. QIDO: the PACS's own instance-level QIDO for the patient (one unpaged query);
- irreducible: the same QIDO requests (one study-level, one instance-level per study, same
  concurrency bound) and one transaction with the same resources, issued directly;
- naive: per instance, one QIDO query and one PUT of the study's ImagingStudy so far.
ratio = sidecar / irreducible (goal <= 1.3). The naive runs above --naive-max-studies are
measured on that many studies and scaled linearly (labelled "extrapolated").
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sidecar import wiring  # noqa: E402
from sidecar.core import qido  # noqa: E402
from sidecar.core.fetch_request import FetchRequest  # noqa: E402
from sidecar.core.mapping import imaging_study_id  # noqa: E402
from sidecar.core.outcome import FetchError, FhirConflict, PatientNotFound  # noqa: E402
from sidecar.settings import load_settings  # noqa: E402
from tests.conftest import SystemTokenAuth, stack_env  # noqa: E402

SYSTEM = "urn:example:mrn:bench"
ISSUER = "BENCH"
SERIES, INSTANCES = 3, 50
# the local stack's (STACK_HAPI_PORT, STACK_PACS_PORT_MAIN); its HAPI enforces SMART tokens
FHIR = f"http://127.0.0.1:{os.environ.get('STACK_HAPI_PORT', '8080')}/fhir"
PACS = f"http://127.0.0.1:{os.environ.get('STACK_PACS_PORT_MAIN', '8042')}"
AUTH = ("orthanc", "orthanc")
FHIR_AUTH: requests.auth.AuthBase | None = None  # set by main(): the system token


class Session(requests.Session):
    """A session whose requests time out (a hung server must not hang the bench)."""

    def request(self, *args, **kwargs):
        kwargs.setdefault("timeout", 300)
        return super().request(*args, **kwargs)


def uid(*parts: object) -> str:
    digest = hashlib.sha256(":".join(map(str, ("bench", *parts))).encode()).digest()
    return f"2.25.{uuid.UUID(bytes=digest[:16]).int}"


def instance(pid: str, s: int, se: int, i: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid(pid, s, se, i)
    ds.PatientID, ds.IssuerOfPatientID, ds.PatientName = pid, ISSUER, "Bench^Patient"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid(pid, s), uid(pid, s, se)
    ds.StudyDate, ds.StudyTime = f"2020{1 + s % 12:02d}{1 + s % 28:02d}", "101500"
    ds.AccessionNumber, ds.StudyID = f"B{pid[-3:]}{s:04d}", str(s)
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "OT", se + 1, i + 1
    ds.SeriesDescription, ds.StudyDescription = f"series {se}", "bench study"
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes(256)
    return ds


def ensure_loaded(pid: str, studies: int) -> None:
    http = Session()
    http.auth = AUTH
    found = http.post(
        f"{PACS}/tools/find", json={"Level": "Instance", "Query": {"PatientID": pid}}
    ).json()
    if len(found) == studies * SERIES * INSTANCES:
        return
    from sidecar.samples.loader import load_into_orthanc

    datasets = (
        instance(pid, s, se, i)
        for s in range(studies)
        for se in range(SERIES)
        for i in range(INSTANCES)
    )
    report = load_into_orthanc(datasets, base_url=PACS, auth=AUTH)
    assert not report.failed, report


def put_patient(http: requests.Session, pid: str) -> str:
    fhir_id = f"bench-{pid.lower()}"
    body = {
        "resourceType": "Patient",
        "id": fhir_id,
        "identifier": [{"system": SYSTEM, "value": pid}],
    }
    http.put(f"{FHIR}/Patient/{fhir_id}", json=body).raise_for_status()
    return fhir_id


def delete_studies(http: requests.Session, study_uids: list[str]) -> None:
    entries = [
        {"request": {"method": "DELETE", "url": f"ImagingStudy/{imaging_study_id(u)}"}}
        for u in study_uids
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    for _ in range(5):
        response = http.post(FHIR, json=bundle)
        if response.status_code != 409:
            break
        progress(f"delete conflict, retrying: {response.text[:300]}")
        time.sleep(1)
    response.raise_for_status()


def irreducible(pid: str, bundle_entries: list[dict], concurrency: int) -> float:
    """The same QIDO calls and one transaction, issued directly on pooled sessions."""
    pacs = Session()
    pacs.auth = AUTH
    pacs.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=concurrency + 2))
    fhir = fhir_session()
    headers = {"Accept": "application/dicom+json"}
    started = time.perf_counter()
    query = qido.query_string(
        [(qido.PATIENT_ID, pid), (qido.ISSUER_OF_PATIENT_ID, ISSUER)],
        fields=qido.STUDY_FIELDS,
        limit=500,
    )
    studies = pacs.get(f"{PACS}/dicom-web/studies?{query}", headers=headers).json()
    uids = [s[qido.STUDY_INSTANCE_UID]["Value"][0] for s in studies]
    fields = "&".join(f"includefield={f}" for f in qido.INSTANCE_FIELDS)

    def instances(study_uid: str) -> list:
        url = f"{PACS}/dicom-web/studies/{study_uid}/instances?{fields}&limit=500"
        return pacs.get(url, headers=headers).json()

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(instances, uids))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": bundle_entries}
    response = fhir.post(FHIR, json=bundle, headers={"Content-Type": "application/fhir+json"})
    if not response.ok:
        raise RuntimeError(f"transaction failed: {response.status_code} {response.text[:1500]}")
    return time.perf_counter() - started


def steady_floor(pid: str, fhir_id: str) -> float:
    """What a steady-state fetch cannot do without: one study-level QIDO, one FHIR search."""
    pacs = Session()
    pacs.auth = AUTH
    fhir = fhir_session()
    started = time.perf_counter()
    query = qido.query_string(
        [(qido.PATIENT_ID, pid), (qido.ISSUER_OF_PATIENT_ID, ISSUER)],
        fields=qido.STUDY_FIELDS,
        limit=500,
    )
    pacs.get(
        f"{PACS}/dicom-web/studies?{query}", headers={"Accept": "application/dicom+json"}
    ).json()
    url: str | None = f"{FHIR}/ImagingStudy?subject=Patient/{fhir_id}&_count=200"
    while url:  # every page, parsed, as any client must
        page = fhir.get(
            url, headers={"Cache-Control": "no-cache", "Accept": "application/fhir+json"}
        )
        page.raise_for_status()
        url = next((x["url"] for x in page.json().get("link", []) if x["relation"] == "next"), None)
    return time.perf_counter() - started


def pacs_instance_qido(pid: str) -> float:
    """The PACS's own instance-level QIDO for the patient: one unpaged query."""
    pacs = Session()
    pacs.auth = AUTH
    fields = "&".join(f"includefield={f}" for f in qido.INSTANCE_FIELDS)
    started = time.perf_counter()
    response = pacs.get(
        f"{PACS}/dicom-web/instances?{qido.PATIENT_ID}={pid}&{fields}",
        headers={"Accept": "application/dicom+json"},
    )
    response.raise_for_status()
    return time.perf_counter() - started


def naive(pid: str, fhir_id: str, studies: list[dict]) -> float:
    """Per instance: one QIDO query for it, then PUT the study's ImagingStudy so far."""
    pacs = Session()
    pacs.auth = AUTH
    fhir = fhir_session()
    started = time.perf_counter()
    for study in studies:
        growing = {k: v for k, v in study.items() if k not in ("series", "meta")}
        growing["series"] = []
        for series in study.get("series", []):
            growing_series = {k: v for k, v in series.items() if k != "instance"}
            growing_series["instance"] = []
            growing["series"].append(growing_series)
            for inst in series.get("instance", []):
                pacs.get(
                    f"{PACS}/dicom-web/instances?SOPInstanceUID={inst['uid']}&PatientID={pid}",
                    headers={"Accept": "application/dicom+json"},
                ).raise_for_status()
                growing_series["instance"].append(inst)
                for _ in range(20):
                    response = fhir.put(
                        f"{FHIR}/ImagingStudy/{study['id']}",
                        json=growing,
                        headers={"Content-Type": "application/fhir+json"},
                    )
                    if response.status_code not in (400, 409):
                        break
                    put_patient(fhir, pid)  # a shared HAPI's Patient cleared by other tests
                response.raise_for_status()
    return time.perf_counter() - started


def fhir_session() -> Session:
    """A session with the sidecar's system token (the stack's HAPI enforces SMART tokens):
    the same credentials the use case holds, fetched and renewed outside the timed span."""
    session = Session()
    session.auth = FHIR_AUTH
    return session


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def main() -> None:
    global PACS, FHIR, FHIR_AUTH  # one run, one target
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--naive-max-studies", type=int, default=10)
    parser.add_argument("--pacs", default=PACS, help="Orthanc REST root (DICOMweb at /dicom-web)")
    parser.add_argument("--fhir", default=FHIR)
    args = parser.parse_args()
    PACS, FHIR = args.pacs.rstrip("/"), args.fhir.rstrip("/")
    # the stack's FHIR credentials (the sidecar's client credentials), with its base overridden
    fhir_env = {k: v for k, v in stack_env().items() if k.startswith("SIDECAR_FHIR_")}
    settings = load_settings(
        {
            **fhir_env,
            "SIDECAR_FHIR_BASE_URL": FHIR,
            "SIDECAR_PACS_MAIN_URL": f"{PACS}/dicom-web",
            "SIDECAR_PACS_MAIN_USERNAME": AUTH[0],
            "SIDECAR_PACS_MAIN_PASSWORD": AUTH[1],
            "SIDECAR_PATIENT_IDENTIFIERS": f"{SYSTEM}|{ISSUER}",
            "SIDECAR_PACS_TIMEOUT_SECONDS": "120",
        }
    )
    fetch = wiring.build(settings).fetch
    http = Session()
    FHIR_AUTH = SystemTokenAuth(fhir_env)  # the sidecar's system token, renewed before expiry
    http.auth = FHIR_AUTH
    http.headers.update({"Content-Type": "application/fhir+json", "Cache-Control": "no-cache"})
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        pid = f"BENCH-{size:03d}"
        # small patients take milliseconds: more rounds, so a median means something
        repeat = max(args.repeat, 15 // size)
        progress(f"{size} studies: loading")
        ensure_loaded(pid, size)
        fhir_id = put_patient(http, pid)
        study_uids = [uid(pid, s) for s in range(size)]
        delete_studies(http, study_uids)
        progress(f"{size} studies: sidecar")

        def run_fetch(fhir_id=fhir_id, pid=pid):
            for _ in range(5):  # a shared HAPI may be cleared by other test sessions
                try:
                    t = time.perf_counter()
                    out = fetch(FetchRequest(patient_id=fhir_id))
                    return out, time.perf_counter() - t
                except (PatientNotFound, FhirConflict, FetchError):
                    progress("patient cleared by someone else; measuring again")
                    put_patient(http, pid)
            raise RuntimeError("the FHIR server keeps being cleared")

        run_fetch()  # warm-up (connections, imports)
        create, steady, direct = [], [], []
        result = None
        for _ in range(repeat):
            delete_studies(http, study_uids)
            put_patient(http, pid)  # other test sessions may clear a shared HAPI
            result, seconds = run_fetch()
            create.append(seconds)
            assert len(result.studies) == size
            again, seconds = run_fetch()
            steady.append(seconds)
        entries = [
            {
                "resource": {k: v for k, v in r.items() if k != "meta"},
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in [*result.endpoints, *result.studies]
        ]
        progress(f"{size} studies: irreducible")
        for _ in range(repeat):
            delete_studies(http, study_uids)
            put_patient(http, pid)
            for _ in range(5):  # retried when other test sessions clear the shared HAPI
                try:
                    direct.append(irreducible(pid, entries, settings.qido.concurrency))
                    break
                except RuntimeError:
                    progress("patient cleared by someone else; measuring again")
                    put_patient(http, pid)
        floor = [steady_floor(pid, fhir_id) for _ in range(repeat)]
        instance_qido = [pacs_instance_qido(pid) for _ in range(repeat)]
        n_naive = min(size, args.naive_max_studies)
        progress(f"{size} studies: naive on {n_naive}")
        delete_studies(http, study_uids)
        put_patient(http, pid)
        naive_time = naive(pid, fhir_id, result.studies[:n_naive]) * size / n_naive
        delete_studies(http, study_uids)
        progress(
            f"{size} studies: sidecar {statistics.median(create):.2f}s, irreducible "
            f"{statistics.median(direct):.2f}s, naive {naive_time:.1f}s"
        )
        rows.append(
            (
                size,
                statistics.median(create),
                statistics.median(steady),
                statistics.median(direct),
                naive_time,
                n_naive < size,
                statistics.median(floor),
                statistics.median(instance_qido),
            )
        )
    fetch.close()
    print(
        f"{'studies':>7} {'instances':>9} {'sidecar':>9} {'irreduc.':>9} {'ratio':>6} "
        f"{'inst.QIDO':>9} {'first/QIDO':>10} {'steady':>8} {'floor':>7} {'steady/floor':>12} "
        f"{'naive':>10} {'naive/sidecar':>13}"
    )
    for size, create, steady, direct, naive_time, extrapolated, floor, inst in rows:
        print(
            f"{size:>7} {size * SERIES * INSTANCES:>9} {create:>8.2f}s {direct:>8.2f}s "
            f"{create / direct:>6.2f} {inst:>8.2f}s {create / inst:>10.2f} {steady:>7.2f}s "
            f"{floor:>6.2f}s {steady / floor:>12.2f} {naive_time:>9.1f}s"
            f"{'*' if extrapolated else ' '} {naive_time / create:>12.0f}x"
        )
    print("* naive time extrapolated linearly from the first studies (see --naive-max-studies)")
    print("goals: ratio <= 1.3; first/QIDO <= 1.2; steady/floor <= 2 (one study-level QIDO and")
    print("one FHIR search are the floor of a steady-state fetch)")


if __name__ == "__main__":
    main()
