"""FHIR follows the PACS by itself, on the real stack: no call to FHIR or the sidecar makes
it happen; the worker's triggers do (Orthanc's change log, the sweep, the catch-up).

Truth about PACS content comes from Orthanc's REST API; the waits are liveness bounds.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from pydicom.uid import generate_uid

from tests.integration.conftest import SYSTEMS, study_uid
from tests.integration.conftest_sync import (
    TINY_ISSUER,
    SyncStack,
    keep_alive,
    module_notify_port,
    read_queue,
    redis_server,  # noqa: F401 - fixture
    release_port,
    running_sync_stack,
    smallest_sample_instance,
    wait_until,
)

pytestmark = pytest.mark.stack

TRIGGERS = {
    "SIDECAR_TRIGGERS": "true",
    "SIDECAR_PACS_MAIN_CHANGES": "orthanc",
    "SIDECAR_PACS_SECOND_CHANGES": "none",
    "SIDECAR_PACS_SECOND_ORTHANC_URL": "",  # (empty: not set) only with CHANGES=orthanc
    "SIDECAR_PACS_MAIN_POLL_SECONDS": "2",
    "SIDECAR_SWEEP_SECONDS": "5",
    "SIDECAR_CATCH_UP_SECONDS": "5",
    "SIDECAR_TRIGGER_LEASE_SECONDS": "6",
}
BOUND = 60  # seconds: the acceptance bound for a PACS change to reach FHIR


@pytest.fixture(scope="module")
def notify_port(stack) -> Iterator[int]:
    yield from module_notify_port(stack)


@pytest.fixture
def converging(request, stack, tmp_path, fhir, notify_port) -> Iterator[SyncStack]:
    redis_url = request.getfixturevalue("redis_server") if "redis" in request.keywords else None
    with running_sync_stack(stack, tmp_path, notify_port, redis_url, **TRIGGERS) as running:
        yield running


@pytest.fixture(scope="module")
def template(stack):
    """The smallest sample instance, to clone new studies from."""
    return smallest_sample_instance()


def new_study(stack, template, patient_id: str, tag: str) -> str:
    """Store a new one-instance study for this PACS patient in Orthanc main; its UID."""
    from sidecar.samples.loader import load_into_orthanc

    tag = f"{tag}-{uuid.uuid4().hex}"  # a study no earlier run stored
    ds = copy.deepcopy(template)
    ds.PatientID = patient_id
    ds.IssuerOfPatientID = TINY_ISSUER
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["conv-study", patient_id, tag])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["conv-series", patient_id, tag])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["conv-sop", patient_id, tag])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    pacs = stack.pacs["main"]
    report = load_into_orthanc([ds], base_url=pacs.base_url, auth=pacs.auth)
    assert not report.failed, report
    return str(ds.StudyInstanceUID)


def delete_study(stack, uid: str) -> None:
    pacs = stack.pacs["main"]
    found = requests.post(
        f"{pacs.base_url}/tools/lookup", data=uid, auth=pacs.auth, timeout=30
    ).json()
    (study,) = [f for f in found if f["Type"] == "Study"]
    requests.delete(f"{pacs.base_url}/studies/{study['ID']}", auth=pacs.auth, timeout=30)


def put_patient(fhir, patient_id: str, mrn: str) -> None:
    body = {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [{"system": SYSTEMS[TINY_ISSUER], "value": mrn}],
    }
    fhir.http.put(f"{fhir.base}/Patient/{patient_id}", json=body).raise_for_status()


def statuses(fhir, patient_id: str) -> dict[str, str]:
    """StudyInstanceUID -> ImagingStudy.status of this Patient's studies."""
    return {study_uid(s): s["status"] for s in fhir.studies_of(patient_id)}


def assert_no_duplicates(fhir) -> None:
    uids = [study_uid(s) for s in fhir.search("ImagingStudy?_count=500")]
    assert len(uids) == len(set(uids)), uids


def first_sync(converging, fhir, patient_id: str, mrn: str) -> None:
    """Create the Patient (the Subscription syncs it, no study yet) and wait for that."""
    queue = read_queue(converging.env)
    put_patient(fhir, patient_id, mrn)
    wait_until(
        lambda: (s := queue.ledger.get(patient_id)) is not None and s.outcome == "synced",
        BOUND,
        what="the Patient's first sync",
    )


def arrives_and_leaves(converging, stack, fhir, template, patient_id: str, mrn: str) -> None:
    first_sync(converging, fhir, patient_id, mrn)
    uid = new_study(stack, template, mrn, "new")
    wait_until(
        lambda: statuses(fhir, patient_id).get(uid) == "available",
        BOUND,
        what="the new study in FHIR",
    )
    delete_study(stack, uid)
    wait_until(
        lambda: statuses(fhir, patient_id).get(uid) not in (None, "available"),
        BOUND,
        what="the deleted study no longer available",
    )
    assert statuses(fhir, patient_id)[uid] == "unknown"
    assert_no_duplicates(fhir)


def test_a_new_study_appears_and_a_deleted_one_leaves_by_itself(converging, stack, fhir, template):
    converging.start_worker()
    arrives_and_leaves(converging, stack, fhir, template, "conv-a", "CONV-A1")
    health = requests.get(f"{converging.url}/healthz", timeout=30).json()["sync"]["triggers"]
    assert not health["changes:main"].get("problem") and health["changes:main"]["lag"] == 0
    assert health["changes:main"]["enqueued"] >= 1 and health["sweep:main"]["enqueued"] >= 1


@pytest.mark.redis
def test_with_redis_and_two_replicas_one_poller_runs_and_a_killed_one_is_replaced(
    converging, stack, fhir, template
):
    workers = [converging.start_worker(), converging.start_worker()]
    queue = read_queue(converging.env)
    wait_until(lambda: queue.triggers.holder("changes:main"), 30, what="a poller")
    holder = queue.triggers.holder("changes:main")
    pids = [str(w.popen.pid) for w in workers]
    assert holder.split(":")[1] in pids
    arrives_and_leaves(converging, stack, fhir, template, "conv-r1", "CONV-R1")
    killed = next(w for w in workers if str(w.popen.pid) == holder.split(":")[1])
    cursor_before = int(queue.triggers.cursor("changes:main"))
    killed.kill9()
    wait_until(
        lambda: (
            (h := queue.triggers.holder("changes:main"))
            and h.split(":")[1] != str(killed.popen.pid)
        ),
        30,
        what="the lease taken over",
    )
    arrives_and_leaves(converging, stack, fhir, template, "conv-r2", "CONV-R2")
    assert int(queue.triggers.cursor("changes:main")) > cursor_before
    runs = [line for w in workers for line in w.log.read_text().splitlines()]
    submitted = [r for r in runs if '"msg": "trigger enqueued"' in r and "changes:main" in r]
    assert submitted  # the change feed, not a notification, brought the studies


def outage_case(converging, stack, fhir, tiny_studies: dict[str, str]) -> None:
    """Web and worker down 3 minutes while 20 Patients with imaging are created (HAPI's
    deliveries meanwhile go to an endpoint that acknowledges and forgets them)."""
    converging.start_worker()
    first_sync(converging, fhir, "conv-before", "CONV-B0")  # the catch-up has a cursor
    converging.stop_all()
    keep_alive(converging.port)
    patients = {f"conv-out-{n}": mrn for n, mrn in enumerate(sorted(tiny_studies)[:20])}
    for patient_id, mrn in patients.items():
        put_patient(fhir, patient_id, mrn)
    time.sleep(180)
    release_port(converging.port)
    restarted = time.monotonic()
    converging.start_web()
    converging.start_worker()
    queue = read_queue(converging.env)

    def all_synced() -> bool:
        return all(
            statuses(fhir, pid) == {tiny_studies[mrn]: "available"} for pid, mrn in patients.items()
        )

    wait_until(all_synced, BOUND, 1.0, what="all 20 synced after the restart")
    assert time.monotonic() - restarted <= BOUND + 5
    wait_until(queue.drained, 30, what="nothing pending")
    assert queue.status()["dead"] == 0
    # the catch-up found what no delivery brought (HAPI may still deliver a few it retried)
    counts = queue.triggers.statuses()
    assert counts["catch-up"]["enqueued"] >= 1
    assert counts["catch-up"]["enqueued"] + counts.get("notify", {}).get("enqueued", 0) >= 20


@pytest.fixture(scope="module")
def tiny_studies(stack) -> dict[str, str]:
    from tests.integration.conftest_sync import load_tiny_studies

    return load_tiny_studies(stack.pacs["main"], 20)


def test_nothing_is_lost_while_the_sidecar_is_down(converging, stack, fhir, tiny_studies):
    outage_case(converging, stack, fhir, tiny_studies)


@pytest.mark.redis
def test_nothing_is_lost_while_the_sidecar_is_down_with_redis(
    converging, stack, fhir, tiny_studies
):
    outage_case(converging, stack, fhir, tiny_studies)


def test_the_change_feed_cursor_survives_kill_9(converging, stack, fhir, template):
    """Studies stored before, during and after a kill -9 of the worker all arrive, once."""
    worker = converging.start_worker()
    first_sync(converging, fhir, "conv-k", "CONV-K1")
    queue = read_queue(converging.env)
    uids = [new_study(stack, template, "CONV-K1", f"k{n}") for n in range(3)]
    worker.kill9()
    uids += [new_study(stack, template, "CONV-K1", f"k{n}") for n in range(3, 6)]
    converging.start_worker()
    wait_until(
        lambda: set(statuses(fhir, "conv-k")) >= set(uids),
        BOUND,
        what="every study stored across the kill",
    )
    assert_no_duplicates(fhir)
    assert all(statuses(fhir, "conv-k")[u] == "available" for u in uids)
    cursor = int(queue.triggers.cursor("changes:main"))
    pacs = stack.pacs["main"]
    last = requests.get(f"{pacs.base_url}/changes", params={"last": ""}, auth=pacs.auth).json()
    assert cursor <= last["Last"]
    wait_until(
        lambda: int(queue.triggers.cursor("changes:main")) == last["Last"], 30, what="caught up"
    )
