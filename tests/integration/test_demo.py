"""``make demo``'s script on the running stack: it starts nothing twice, shows the automatic
sync and prints a summary whose WADO-RS URL really retrieves the instance it names; a second
run duplicates nothing."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import requests

from sidecar.samples.demo import DEMO_SYSTEM, DEMO_VALUE
from sidecar.settings import SyncSettings
from tests.conftest import stack_sh
from tests.integration.conftest_sync import keep_alive, release_port

DEFAULT_SUBSCRIPTION_ID = SyncSettings().subscription_id

SIDECAR_PORT = int(os.environ.get("STACK_SIDECAR_PORT", "8090"))

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
DEMO_SH = ROOT / "deploy" / "local" / "demo.sh"
STUDY_LINE = re.compile(r"^  study \S+  .+  \[[A-Z,]+\]  (\d+) series, (\d+) instances", re.M)
PATIENT_LINE = re.compile(r"^Patient/([A-Za-z0-9\-.]+)  identifier (\S+)", re.M)
WADO_LINE = re.compile(r"^WADO-RS instance: (\S+)$", re.M)


def pids() -> dict[str, str]:
    out = {}
    for line in stack_sh("status").splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1] == "running":
            out[parts[0]] = parts[3]
    return out


def run_demo() -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        ["bash", str(DEMO_SH)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_demo_script_summary_and_rerun(clean_fhir, fhir_http, sample_data):
    release_port(SIDECAR_PORT)  # an AckServer an earlier test may have left on it
    before = pids()
    try:
        first = run_demo()
        after = pids()
        # nothing that was running was started again
        for component in ("hapi", "pacs-main"):
            assert after[component] == before[component], component
        if "sidecar" in before:
            assert after["sidecar"] == before["sidecar"]
        assert "hapi already running" in first.stderr

        out = first.stdout
        assert "demo Patient/" in out and ": created" in out
        # the clean sample study answers with no OperationOutcome at all
        assert not re.search(r"^  (warning|information|error): ", out, re.M), out
        assert re.search(r"^automatic sync: \d+ ImagingStudy on the FHIR server after", out, re.M)
        patient = PATIENT_LINE.search(out)
        assert patient and patient.group(2) == f"{DEMO_SYSTEM}|{DEMO_VALUE}", out
        studies = STUDY_LINE.findall(out)
        assert studies, out
        assert all(int(series) >= 1 and int(instances) >= 1 for series, instances in studies)

        url = WADO_LINE.search(out)
        assert url, out
        sop_uid = url.group(1).rstrip("/").rpartition("/")[2]
        pacs = clean_fhir.pacs["main"]
        assert url.group(1).startswith(pacs.dicomweb_url)
        meta = requests.get(
            f"{url.group(1)}/metadata",
            auth=pacs.auth,
            headers={"Accept": "application/dicom+json"},
            timeout=30,
        )
        assert meta.status_code == 200
        assert meta.json()[0]["00080018"]["Value"] == [sop_uid]
        instance = requests.get(
            url.group(1),
            auth=pacs.auth,
            headers={"Accept": 'multipart/related; type="application/dicom"'},
            timeout=30,
        )
        assert instance.status_code == 200
        assert sop_uid.encode() in instance.content
        assert "frames/1/rendered" in out

        second = run_demo()
        assert "already there (nothing created)" in second.stdout
        assert len(STUDY_LINE.findall(second.stdout)) == len(studies)
        base = clean_fhir.fhir_base
        found = fhir_http.get(
            f"{base}/Patient",
            params={"identifier": f"{DEMO_SYSTEM}|{DEMO_VALUE}"},
            headers={"Cache-Control": "no-cache"},
        ).json()
        assert found.get("total", len(found.get("entry", []))) == 1
        patient_id = patient.group(1)
        stored = fhir_http.get(
            f"{base}/ImagingStudy",
            params={"subject": f"Patient/{patient_id}", "_count": 100},
            headers={"Cache-Control": "no-cache"},
        ).json()
        assert len(stored.get("entry", [])) == len(studies)
    finally:
        if "sidecar" not in before:  # leave the shared stack as it was
            fhir_http.delete(f"{clean_fhir.fhir_base}/Subscription/{DEFAULT_SUBSCRIPTION_ID}")
            stack_sh("down", "sidecar")
            keep_alive(SIDECAR_PORT)  # HAPI may still deliver to the deleted Subscription
