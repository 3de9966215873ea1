"""Acceptance: ``dicom-fhir sync --all`` over a 10,000-instance PACS, killed and resumed.

A dedicated third Orthanc (``pacs-bulk``, port 8044) holds a synthetic corpus that shares
no PatientID with PACS main's roster (``include_roster=False``) plus a few isolation edge
cases of its own (prefix IDs, IDs differing in case, one ID under two issuers, no issuer, a
wildcard ID that must be refused). The truth is read from Orthanc's REST API, not QIDO;
FHIR assertions are scoped to the bulk PACS's Endpoint and to the bulk patients.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sidecar.samples.generator import SamplePatient, generate_corpus, generate_studies
from sidecar.samples.loader import load_into_orthanc
from tests.conftest import STACK_SH, with_pacs
from tests.integration.conftest import SYSTEMS

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
BULK_PORT = 8044
BULK_URL = f"http://127.0.0.1:{BULK_PORT}"
ENDPOINT = "Endpoint/dicomweb-bulk"
TOTAL_INSTANCES = 10_000
MATRIX_SCALE = 0.125  # 64x64 CT etc.: 10,000 instances are ~75 MB, not 4 GB
SEED = 1
EDGE = [
    SamplePatient("B-12", "HOSP-A", "Edge^Short", "19600101", "M"),
    SamplePatient("B-123", "HOSP-A", "Edge^Long", "19610101", "F"),
    SamplePatient("b-case", "HOSP-A", "Edge^Lower", "19620101", "F"),
    SamplePatient("B-CASE", "HOSP-A", "Edge^Upper", "19630101", "M"),
    SamplePatient("B-SAME", "HOSP-A", "Edge^Alpha", "19640101", "M"),
    SamplePatient("B-SAME", "HOSP-B", "Edge^Beta", "19650101", "F"),
    SamplePatient("B-NOISSUER", None, "Edge^None", "19660101", "O"),
    SamplePatient("B*WILD", "HOSP-A", "Edge^Wild", "19670101", "F"),
]
REFUSED = {("B*WILD", "HOSP-A")}
EDGE_SIZING = {"series_per_study": 2, "instances_per_series": 2}  # 4 instances each


def bulk_datasets() -> Iterator:
    edge_instances = len(EDGE) * EDGE_SIZING["series_per_study"] * 2
    for _, datasets in generate_studies(
        patients=EDGE, seed=SEED, matrix_scale=MATRIX_SCALE, **EDGE_SIZING
    ):
        yield from datasets
    for _, datasets in generate_corpus(
        target_instances=TOTAL_INSTANCES - edge_instances,
        seed=SEED,
        include_roster=False,
        matrix_scale=MATRIX_SCALE,
    ):
        yield from datasets


def bulk_stack(*args: str) -> str:
    env = {**os.environ, "STACK_PACS_PORT_BULK": str(BULK_PORT)}
    done = subprocess.run(
        ["bash", str(STACK_SH), *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def bulk_pacs(stack) -> Iterator[requests.Session]:
    """pacs-bulk up, holding exactly the bulk corpus (loaded only when it is not there)."""
    bulk_stack("up", "pacs-bulk")
    http = requests.Session()
    http.auth = (stack.pacs["main"].username, stack.pacs["main"].password)
    try:
        count = http.get(f"{BULK_URL}/statistics", timeout=30).json()["CountInstances"]
        if count != TOTAL_INSTANCES:
            report = load_into_orthanc(
                bulk_datasets(), base_url=BULK_URL, auth=http.auth, workers=4
            )
            assert not report.failed, report.summary()
            count = http.get(f"{BULK_URL}/statistics", timeout=30).json()["CountInstances"]
        assert count == TOTAL_INSTANCES
        yield http
    finally:
        http.close()
        bulk_stack("down", "pacs-bulk")


def orthanc_truth(http: requests.Session) -> dict[str, tuple[str, str | None, int]]:
    """StudyInstanceUID -> (PatientID, IssuerOfPatientID, instances), from Orthanc's REST API."""
    truth = {}
    for study in http.get(f"{BULK_URL}/studies", params={"expand": ""}, timeout=60).json():
        tags = http.get(
            f"{BULK_URL}/studies/{study['ID']}/shared-tags", params={"simplify": ""}, timeout=30
        ).json()
        stats = http.get(f"{BULK_URL}/studies/{study['ID']}/statistics", timeout=30).json()
        truth[study["MainDicomTags"]["StudyInstanceUID"]] = (
            study["PatientMainDicomTags"]["PatientID"],
            tags.get("IssuerOfPatientID"),
            int(stats["CountInstances"]),
        )
    return truth


def fhir_search(http: requests.Session, url: str) -> list[dict]:
    out = []
    while url:
        page = http.get(url, headers={"Cache-Control": "no-cache"}, timeout=60)
        page.raise_for_status()
        bundle = page.json()
        out += [e["resource"] for e in bundle.get("entry", [])]
        url = next((x["url"] for x in bundle.get("link", []) if x["relation"] == "next"), None)
    return out


def backfill_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    for line in bulk_stack("env").splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0] if value else ""
    assert "bulk" in env["SIDECAR_PACS"].split(",")
    # only the bulk PACS: other tests stop and start PACS main/second on the shared stack
    env = with_pacs(env, ["bulk"])
    env.update({"SIDECAR_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)})
    return env


COMMAND = [sys.executable, "-m", "sidecar", "sync", "--all", "--pacs", "bulk"]
ARGS = ["--create-patients", "--window-days", "60", "--since", "2018-01-01"]
ARGS += ["--until", "2024-12-31"]


def test_backfill_killed_and_resumed_writes_every_study_once(
    bulk_pacs, clean_fhir, fhir_http, tmp_path
):
    env = backfill_env(tmp_path)
    log1 = tmp_path / "run1.log"
    started = time.monotonic()
    with open(log1, "w") as out:
        proc = subprocess.Popen(COMMAND + ARGS, cwd=ROOT, env=env, stdout=out, stderr=out)
    checkpoints = tmp_path / "backfill"
    deadline = time.monotonic() + 240
    try:
        while True:  # kill -9 once a fifth of the instances are recorded as done
            done = 0
            for path in checkpoints.glob("bulk-*.json"):
                data = json.loads(path.read_text())
                done = sum(data["windows"].values())
                done += sum(sum(p.values()) for p in data["patients"].values())
            if done >= TOTAL_INSTANCES // 5 or proc.poll() is not None:
                break
            assert time.monotonic() < deadline, log1.read_text()[-3000:]
            time.sleep(0.1)
        assert proc.poll() is None, f"the backfill ended before the kill:\n{log1.read_text()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_after = time.monotonic() - started

    resumed = subprocess.run(
        COMMAND + ARGS, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    total_seconds = time.monotonic() - started
    print(f"killed after {killed_after:.1f} s; total with resume {total_seconds:.1f} s")
    print(resumed.stdout)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr[-3000:]
    # refused with a warning, not queried; named by a StudyInstanceUID, never its PatientID
    assert "refused (not queryable safely): " in resumed.stdout
    assert "B*WILD" not in resumed.stdout + resumed.stderr
    skipped = int(resumed.stdout.split("synced (")[1].split(" done before")[0])
    windows_skipped = int(resumed.stdout.split("window(s) (")[1].split(" done before")[0])
    assert skipped + windows_skipped > 0, "the resumed run did not use the checkpoint"

    truth = orthanc_truth(bulk_pacs)
    assert sum(n for *_, n in truth.values()) == TOTAL_INSTANCES
    expected = {uid: t for uid, t in truth.items() if t[:2] not in REFUSED}
    studies = fhir_search(
        fhir_http, f"{clean_fhir.fhir_base}/ImagingStudy?endpoint={ENDPOINT}&_count=500"
    )
    uids = Counter(
        i["value"].removeprefix("urn:oid:")
        for s in studies
        for i in s["identifier"]
        if i.get("system") == "urn:dicom:uid"
    )
    duplicated = {u: n for u, n in uids.items() if n > 1}
    assert not duplicated, f"ImagingStudy written more than once: {duplicated}"
    missing = set(expected) - set(uids)
    assert not missing, f"{len(missing)} of {len(expected)} studies missing"
    extra = set(uids) - set(expected)
    assert not extra, f"studies not in the bulk PACS (or refused): {extra}"
    by_uid = {
        next(
            i["value"] for i in s["identifier"] if i.get("system") == "urn:dicom:uid"
        ).removeprefix("urn:oid:"): s
        for s in studies
    }
    assert sum(by_uid[u]["numberOfInstances"] for u in expected) == sum(
        n for *_, n in expected.values()
    )

    patients: dict[tuple[str, str | None], str] = {}
    for pid, issuer in {t[:2] for t in expected.values()}:
        found = fhir_search(
            fhir_http, f"{clean_fhir.fhir_base}/Patient?identifier={SYSTEMS[issuer]}|{pid}"
        )
        assert len(found) == 1, f"{len(found)} Patients for {SYSTEMS[issuer]}|{pid}"
        patients[(pid, issuer)] = found[0]["id"]
    assert len(set(patients.values())) == len(patients)  # no two DICOM patients merged
    for uid, (pid, issuer, instances) in expected.items():
        study = by_uid[uid]
        assert study["subject"]["reference"] == f"Patient/{patients[(pid, issuer)]}", uid
        assert study["numberOfInstances"] == instances, uid
