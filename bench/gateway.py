"""bench/gateway: retrieving a study through the imaging gateway against straight from the PACS.

    python bench/gateway.py [--instances 100] [--rounds 5]

Needs the local stack (`deploy/local/stack.sh up`: Keycloak, HAPI, Orthanc). Loads one
study of ``--instances`` 512x512 16-bit instances for a bench patient (idempotent), creates
the Patient, fetches its imaging, starts a sidecar (gunicorn, 2 workers) on a free port and
then, alternating in each round, retrieves the whole study (WADO-RS ``studies/{uid}``,
``multipart/related; type=application/dicom``):
- direct: from Orthanc's DICOMweb root with Orthanc's password;
- gateway: from ``Endpoint.address`` (the sidecar's gateway) with a patient's SMART token.
Prints MB/s of each and the ratio gateway / direct (goal >= 0.9), the medians of the rounds;
the first gateway request (a decision not yet cached) is timed apart.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import stack_env, stack_sh, system_session  # noqa: E402

MRN = "urn:example:mrn:hosp-a"
PACS = f"http://127.0.0.1:{os.environ.get('STACK_PACS_PORT_MAIN', '8042')}"
ORTHANC = ("orthanc", os.environ.get("ORTHANC_PASSWORD", "orthanc"))
ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def uid(*parts: object) -> str:
    digest = hashlib.sha256(":".join(map(str, ("gateway-bench", *parts))).encode()).digest()
    return f"2.25.{uuid.UUID(bytes=digest[:16]).int}"


def instance(pid: str, n: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid(pid, n)
    ds.PatientID, ds.IssuerOfPatientID, ds.PatientName = pid, "HOSP-A", "Bench^Gateway"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid(pid, "study"), uid(pid, "series", n // 50)
    ds.StudyDate, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "20240101", "OT", 1, n + 1
    ds.Rows = ds.Columns = 512
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    rng = np.random.default_rng(n)
    ds.PixelData = rng.integers(0, 4096, (512, 512), dtype=np.uint16).tobytes()
    return ds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed_get(url: str, **kwargs) -> tuple[float, int]:
    started = time.perf_counter()
    with requests.get(url, stream=True, timeout=300, **kwargs) as answer:
        answer.raise_for_status()
        FIRST_BYTE.append(time.perf_counter() - started)
        size = sum(len(chunk) for chunk in answer.iter_content(1024 * 1024))
    return time.perf_counter() - started, size


FIRST_BYTE: list[float] = []  # seconds to the answer's headers, of every timed_get


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    pid = f"GWB-{args.instances}"
    from sidecar.samples.loader import load_into_orthanc

    report = load_into_orthanc(
        (instance(pid, n) for n in range(args.instances)), base_url=PACS, auth=ORTHANC
    )
    assert not report.failed, report
    study = uid(pid, "study")

    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env.update(stack_env())
    port = free_port()
    env.update(
        {
            "SIDECAR_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "SIDECAR_PATIENT_IDENTIFIERS": f"{MRN}|HOSP-A",
            "SIDECAR_REGISTER_ON_START": "false",
            "PYTHONPATH": str(ROOT),
        }
    )
    log = open(ROOT / "var" / "bench-gateway.log", "w")  # noqa: SIM115 - lives as the server
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sidecar",
            "serve",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--no-worker",
            "--no-register",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                if requests.get(f"{base}/livez", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        fhir = env["SIDECAR_FHIR_BASE_URL"]
        with system_session(env) as http:
            patient = {"resourceType": "Patient", "identifier": [{"system": MRN, "value": pid}]}
            found = http.get(f"{fhir}/Patient", params={"identifier": f"{MRN}|{pid}"}).json()
            pid_fhir = (
                found["entry"][0]["resource"]["id"]
                if found.get("entry")
                else http.post(f"{fhir}/Patient", json=patient).json()["id"]
            )
            fetched = requests.post(
                f"{base}/fhir/Patient/{pid_fhir}/$fetch-imaging",
                headers={"X-Sidecar-Secret": env["SIDECAR_RELAY_SECRET"].split(",")[0]},
                timeout=300,
            )
            fetched.raise_for_status()
        token = stack_sh("token", "--patient", f"Patient/{pid_fhir}").strip()
        gateway = f"{base}/dicomweb/main/studies/{study}"
        direct = f"{PACS}/dicom-web/studies/{study}"
        first, _ = timed_get(
            gateway, headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT}
        )
        rows = []
        for _ in range(args.rounds):
            d, size = timed_get(direct, auth=ORTHANC, headers={"Accept": ACCEPT})
            g, gsize = timed_get(
                gateway, headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT}
            )
            assert abs(gsize - size) < 4096, (size, gsize)  # the same parts, other boundaries
            rows.append((size, d, g, *FIRST_BYTE[-2:]))
    finally:
        server.terminate()
        server.wait(30)
    size = rows[0][0] / 1e6
    direct_s = statistics.median(r[1] for r in rows)
    gateway_s = statistics.median(r[2] for r in rows)
    print(f"study of {args.instances} instances, {size:.1f} MB, {args.rounds} rounds (medians)")
    direct_first = statistics.median(r[3] for r in rows)
    gateway_first = statistics.median(r[4] for r in rows)
    print(
        f"{'direct':>10} {size / direct_s:8.1f} MB/s  {direct_s:6.3f} s"
        f"  (headers after {direct_first:.3f} s)"
    )
    print(
        f"{'gateway':>10} {size / gateway_s:8.1f} MB/s  {gateway_s:6.3f} s"
        f"  (headers after {gateway_first:.3f} s; the first request, its decision not cached:"
        f" {first:.3f} s)"
    )
    print(f"ratio gateway/direct throughput: {direct_s / gateway_s:.2f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
