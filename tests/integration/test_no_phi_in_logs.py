"""No identifier value, name or birth date in any log stream (issue 18), on the real stack.

The first test runs a representative set of operations for two made-up people whose
PatientID, name and birth date occur nowhere else: a sync through a PACS outage (retries),
the PACS change feed, fetches, a duplicate-identifier conflict, refusals, ``sync
--identifier``, a backfill that creates a Patient from the DICOM demographics, and ``jobs``.
It then reads every stream those processes wrote: the web's and the worker's logs (gunicorn's
own lines included), each command's output, and every file of the sidecar's data folder (the
ledger, the queue, the backfill checkpoint).

The last test of the session looks for every identifier value the suite sent to the FHIR
server, and the sample roster's PatientIDs, in ``var/logs/``, every sidecar log the suite
wrote and every sync ledger.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests import phi
from tests.integration.conftest import SYSTEMS
from tests.integration.conftest_sync import (
    SyncStack,
    module_notify_port,
    read_queue,
    running_sync_stack,
    smallest_sample_instance,
    wait_until,
)

pytestmark = pytest.mark.stack
ISSUER = "HOSP-A"
#: StudyDates no other study of the suite has: the backfill walks these days only
SYNCED_DAY, BACKFILLED_DAY = "19130601", "19130602"


def person(tag: str) -> dict[str, str]:
    """A made-up patient: values that can only come from this test."""
    return {
        "mrn": f"PHIMRN{tag}",
        "family": f"Phifamily{tag.lower()}",
        "given": f"Phigiven{tag.lower()}",
        "birth": f"1913-0{1 + int(tag[0], 16) % 9}-1{int(tag[1], 16) % 10}",
    }


def dicom_study(who: dict[str, str], study_date: str):
    """One small instance of ``who`` (PatientID (0010,0020), IssuerOfPatientID (0010,0021),
    PatientName (0010,0010), PatientBirthDate (0010,0030)) on ``study_date``."""
    from pydicom.uid import generate_uid

    ds = copy.deepcopy(smallest_sample_instance())
    ds.PatientID = who["mrn"]
    ds.IssuerOfPatientID = ISSUER
    ds.PatientName = f"{who['family']}^{who['given']}"
    ds.PatientBirthDate = who["birth"].replace("-", "")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


def fhir_patient(patient_id: str, who: dict[str, str]) -> dict:
    return {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [{"system": SYSTEMS[ISSUER], "value": who["mrn"]}],
        "name": [{"family": who["family"], "given": [who["given"]]}],
        "birthDate": who["birth"],
    }


def secrets_of(who: dict[str, str]) -> set[str]:
    """Everything about ``who`` that must not be logged, in each form it travels in."""
    return {
        who["mrn"],
        who["family"],
        who["given"],
        who["birth"],
        who["birth"].replace("-", ""),
        f"{who['family']}^{who['given']}",
    }


@pytest.fixture(scope="module")
def notify_port(stack) -> Iterator[int]:
    yield from module_notify_port(stack)


@pytest.fixture
def sync_stack(stack, tmp_path, fhir, notify_port) -> Iterator[SyncStack]:
    """Web + one worker that also runs the triggers (PACS change feed every second)."""
    with running_sync_stack(
        stack,
        tmp_path,
        notify_port,
        SIDECAR_TRIGGERS="true",
        SIDECAR_PACS_MAIN_CHANGES="orthanc",
        SIDECAR_PACS_MAIN_POLL_SECONDS="1",
        SIDECAR_TRIGGER_LEASE_SECONDS="6",
    ) as running:
        running.start_worker()
        yield running


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_representative_day_logs_no_identifier_name_or_birth_date(
    sync_stack, fhir, stack, tmp_path
):
    tag = uuid.uuid4().hex[:8].upper()
    synced, backfilled = person(tag), person(tag[::-1])
    secrets = secrets_of(synced) | secrets_of(backfilled)
    pacs = stack.pacs["main"]
    queue = read_queue(sync_stack.env)
    streams: dict[str, str] = {}  # command outputs

    def put(patient_id: str, who: dict[str, str]) -> None:
        response = fhir.http.put(
            f"{fhir.base}/Patient/{patient_id}", json=fhir_patient(patient_id, who)
        )
        response.raise_for_status()

    def state(patient_id: str):
        return queue.ledger.get(patient_id)

    # a sync through a PACS outage: connection errors, retries, the ledger's last error
    stack.stop_pacs("main")
    try:
        put("phi-a", synced)
        wait_until(
            lambda: (s := state("phi-a")) is not None and s.attempts >= 1,
            90,
            what="a failed sync attempt",
        )
    finally:
        stack.start_pacs("main")
    wait_until(
        lambda: (s := state("phi-a")) is not None and s.outcome == "synced", 120, 0.5, what="sync"
    )

    # the PACS change feed: a new study of an existing Patient
    from sidecar.samples.loader import load_into_orthanc

    time.sleep(3)  # the feed has taken the change log's head as its cursor
    study = dicom_study(synced, SYNCED_DAY)
    assert not load_into_orthanc([study], base_url=pacs.base_url, auth=pacs.auth).failed
    wait_until(lambda: len(fhir.studies_of("phi-a")) == 1, 120, 0.5, what="the feed's sync")

    # a second Patient with the same identifier: a conflict, in the ledger and on $fetch-imaging
    put("phi-b", synced)
    wait_until(
        lambda: (s := state("phi-b")) is not None and s.outcome == "conflict", 90, what="conflict"
    )
    relay = {"X-Sidecar-Secret": stack.relay_secret}
    operation = f"{sync_stack.url}/fhir/Patient/%s/$fetch-imaging"
    assert requests.post(operation % "phi-b", headers=relay, timeout=60).status_code == 409
    fhir.http.delete(f"{fhir.base}/Patient/phi-b").raise_for_status()
    assert requests.post(operation % "phi-a", headers=relay, timeout=60).status_code == 200

    # refusals: a wrong secret, hostile values that carry the MRN, a body that is not a Patient
    mrn = synced["mrn"]
    refused = [
        requests.post(operation % "phi-a", headers={"X-Sidecar-Secret": mrn}, timeout=30),
        requests.post(operation % "phi-a", params={"detail": mrn}, headers=relay, timeout=30),
        requests.post(operation % "phi-a", params={"since": mrn}, headers=relay, timeout=30),
        requests.post(
            operation % "phi-a",
            json={"resourceType": "Parameters", "parameter": [{"name": mrn}]},
            headers=relay,
            timeout=30,
        ),
        requests.post(operation % "phi-nobody", headers=relay, timeout=30),  # no such Patient
        requests.put(
            f"{sync_stack.url}/notify/Patient/phi-a",
            data=json.dumps({"resourceType": "Patient", "identifier": mrn}),
            headers={
                "Content-Type": "application/fhir+json",
                "X-Sidecar-Secret": stack.notify_secret,
            },
            timeout=30,
        ),
    ]
    assert all(400 <= r.status_code < 500 for r in refused), [r.status_code for r in refused]
    for response in refused:
        assert mrn not in response.text  # nor in an answer: it may end up in a client's log

    # the command line: a sync by identifier, a backfill creating a Patient, the jobs list
    env = {**sync_stack.env, "SIDECAR_TRIGGERS": "false"}
    by_identifier = cli(env, "sync", "-v", "--identifier", f"{SYSTEMS[ISSUER]}|{mrn}")
    assert by_identifier.returncode == 0, by_identifier.stderr[-2000:]
    other = dicom_study(backfilled, BACKFILLED_DAY)
    assert not load_into_orthanc([other], base_url=pacs.base_url, auth=pacs.auth).failed
    day = f"{BACKFILLED_DAY[:4]}-{BACKFILLED_DAY[4:6]}-{BACKFILLED_DAY[6:]}"
    backfill = cli(
        env, "sync", "--all", "-v", "--pacs", "main", "--since", day, "--until", day,
        "--create-patients",
    )  # fmt: skip
    assert backfill.returncode == 0, backfill.stderr[-2000:]
    created = fhir.search(f"Patient?identifier={SYSTEMS[ISSUER]}|{backfilled['mrn']}")
    assert [p["name"][0]["family"] for p in created] == [backfilled["family"]]
    for name, done in (("sync --identifier", by_identifier), ("sync --all", backfill)):
        streams[name] = done.stdout + done.stderr
    for args in (("jobs",), ("jobs", "--json"), ("check",)):
        done = cli(env, *args)
        streams[" ".join(args)] = done.stdout + done.stderr

    sync_stack.stop_all()  # every line flushed
    logs = {p.log.name: p.log.read_text(encoding="utf-8") for p in sync_stack.procs}
    assert "phi-a" in logs["worker-1.log"] and "phi-b" in logs["worker-1.log"]  # the right logs
    assert "conflict" in streams["jobs"]
    leaks = {
        name: sorted(s for s in secrets if s in text) for name, text in {**logs, **streams}.items()
    }
    assert {name: found for name, found in leaks.items() if found} == {}
    stored = [p for p in Path(sync_stack.env["SIDECAR_DATA_DIR"]).rglob("*") if p.is_file()]
    assert any(p.name.startswith("queue.sqlite3") for p in stored)  # the ledger is there
    assert phi.found_in(stored, secrets) == {}


def suite_files(stack, basetemp: Path) -> list[Path]:
    """Every log stream and sync ledger the session may have written."""
    data = stack.data_dir
    candidates = [
        *data.glob("logs/*.log"),
        *data.glob("*.log"),
        *(p for p in data.rglob("queue.sqlite3*") if "orthanc" not in p.parts[-2]),
        *basetemp.rglob("*.log"),
        *basetemp.rglob("queue.sqlite3*"),
    ]
    fresh = (p for p in dict.fromkeys(candidates) if p.is_file())
    return [p for p in fresh if p.stat().st_mtime >= phi.STARTED]


@pytest.mark.last
def test_the_suite_left_no_identifier_value_in_var_logs_or_a_ledger(stack, tmp_path_factory):
    values = phi.SENT | phi.roster_values()
    assert values
    files = suite_files(stack, tmp_path_factory.getbasetemp())
    assert files, "no log of this session found"
    assert phi.found_in(files, values) == {}
