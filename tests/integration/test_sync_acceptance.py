"""Automatic sync acceptance on the real stack: HAPI delivers Patient notifications through
the REST-hook Subscription to a gunicorn sidecar; worker processes run the syncs.

Truth about PACS content comes from Orthanc's REST API; the queue's own ledger is read only
to count deliveries and check that it drained. The waits are liveness bounds, generous on
purpose (HAPI delivers through a 5 s scheduler and slows on a loaded 2-core machine); how
fast the sync is lives in bench/sync.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from tests.integration.conftest import SYSTEMS, orthanc_study_uids, study_uid
from tests.integration.conftest_sync import (
    TINY_ISSUER,
    SyncStack,
    load_tiny_studies,
    module_notify_port,
    notifications_logged,
    overlapping,
    read_queue,
    redis_server,  # noqa: F401 - fixture
    running_sync_stack,
    sync_intervals,
    tiny_patient_id,
    wait_until,
)

pytestmark = pytest.mark.stack
TINY_COUNT = 100


@pytest.fixture(scope="module")
def tiny_studies(stack) -> dict[str, str]:
    return load_tiny_studies(stack.pacs["main"], TINY_COUNT)


@pytest.fixture(scope="module")
def notify_port(stack) -> Iterator[int]:
    yield from module_notify_port(stack)


@pytest.fixture
def sync_stack(request, stack, tmp_path, fhir, notify_port) -> Iterator[SyncStack]:
    """Web (2 gunicorn workers) + the Subscription; workers are started by each test."""
    redis_url = request.getfixturevalue("redis_server") if "redis" in request.keywords else None
    with running_sync_stack(stack, tmp_path, notify_port, redis_url) as running:
        yield running


def put_patient(fhir, patient_id: str, value: str, issuer: str | None = TINY_ISSUER, **extra):
    body = {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [{"system": SYSTEMS[issuer], "value": value}],
        **extra,
    }
    response = fhir.http.put(f"{fhir.base}/Patient/{patient_id}", json=body)
    response.raise_for_status()
    return response.json()


def active_study_uids(fhir, patient_id: str) -> set[str]:
    return {
        study_uid(s)
        for s in fhir.studies_of(patient_id)
        if s["status"] in ("available", "registered")
    }


def attempts(queue, patient_id: str) -> int:
    state = queue.ledger.get(patient_id)
    return state.attempts if state is not None else 0


def pending_of(queue, patient_ids) -> int:
    states = [queue.ledger.get(p) for p in patient_ids]
    return sum(1 for s in states if s is not None and s.pending)


def synced(queue, patient_ids) -> bool:
    states = [queue.ledger.get(p) for p in patient_ids]
    return all(s is not None and not s.pending and s.outcome == "synced" for s in states)


def test_a_new_patient_gets_its_imaging_within_10_s_and_studies_follow_its_identifier(
    sync_stack, fhir, sample_data, stack
):
    sync_stack.start_worker()
    truth_12 = orthanc_study_uids(stack.pacs["main"], "12", "HOSP-A")
    truth_12 |= orthanc_study_uids(stack.pacs["second"], "12", "HOSP-A")
    truth_123 = orthanc_study_uids(stack.pacs["main"], "123", "HOSP-A")
    truth_123 |= orthanc_study_uids(stack.pacs["second"], "123", "HOSP-A")
    assert truth_12 and truth_123 and not truth_12 & truth_123

    started = time.monotonic()
    put_patient(fhir, "sync-new", "12", "HOSP-A")
    wait_until(lambda: active_study_uids(fhir, "sync-new") == truth_12, 30, what="studies of 12")
    assert time.monotonic() - started < 10

    put_patient(fhir, "sync-new", "123", "HOSP-A")  # the identifier changes
    wait_until(lambda: active_study_uids(fhir, "sync-new") == truth_123, 30, what="studies of 123")
    old = {study_uid(s): s["status"] for s in fhir.studies_of("sync-new")}
    assert all(old[uid] in ("entered-in-error", "unknown") for uid in truth_12)

    # a change of nothing relevant (telecom) is acknowledged as unchanged: no sync runs
    queue = read_queue(sync_stack.env)
    before = queue.ledger.get("sync-new")
    put_patient(fhir, "sync-new", "123", "HOSP-A", telecom=[{"system": "phone", "value": "+41 1"}])
    time.sleep(2)
    after = queue.ledger.get("sync-new")
    assert (after.wanted, after.done, after.synced_at) == (
        before.wanted,
        before.done,
        before.synced_at,
    )


def test_a_wrong_secret_is_refused_and_nothing_is_queued(sync_stack, stack):
    cases = [
        ({"X-Sidecar-Secret": "not-the-secret"}, 403),
        ({"X-Sidecar-Secret": stack.relay_secret}, 403),  # the relay secret is not for /notify
        ({}, 401),
    ]
    for headers, status in cases:
        response = requests.put(
            f"{sync_stack.url}/notify/Patient/intruder",
            json={"resourceType": "Patient", "id": "intruder"},
            headers={"Content-Type": "application/fhir+json", **headers},
            timeout=10,
        )
        assert response.status_code == status
    queue = read_queue(sync_stack.env)
    assert queue.ledger.get("intruder") is None
    # other tests' Patients may be delivered meanwhile: only the intruder matters
    assert "intruder" not in {t.args[0] for t in queue.huey.pending() if t.args}


def kill9_case(sync_stack, fhir, tiny_studies, workers: int) -> None:
    patients = [f"sync-k{n}" for n in range(1, 51)]
    for n, patient_id in enumerate(patients, start=1):
        put_patient(fhir, patient_id, tiny_patient_id(n))
    queue = read_queue(sync_stack.env)
    wait_until(lambda: pending_of(queue, patients) == 50, 90, what="50 notifications queued")
    first = [sync_stack.start_worker() for _ in range(workers)]
    wait_until(lambda: pending_of(queue, patients) <= 47, 60, 0.05, what="a few synced")
    for proc in first:
        proc.kill9()  # mid-burst: some syncs are cut short, their leases stay behind
    assert pending_of(queue, patients) > 0, "the kill must leave work behind"
    for _ in range(workers):
        sync_stack.start_worker()
    wait_until(lambda: synced(queue, patients), 120, 0.5, what="all 50 synced")
    for n, patient_id in enumerate(patients, start=1):
        assert active_study_uids(fhir, patient_id) == {tiny_studies[tiny_patient_id(n)]}
    runs = sync_intervals([p.log for p in sync_stack.procs if p.name == "worker"])
    assert set(patients) <= set(runs)
    assert overlapping(runs) == []
    assert queue.drained()


def test_kill_9_the_worker_with_50_jobs_queued_loses_nothing(sync_stack, fhir, tiny_studies):
    kill9_case(sync_stack, fhir, tiny_studies, workers=1)


@pytest.mark.redis
def test_kill_9_with_redis_and_two_workers_loses_nothing(sync_stack, fhir, tiny_studies):
    kill9_case(sync_stack, fhir, tiny_studies, workers=2)


def test_pacs_down_while_notifications_arrive_all_complete_after(
    sync_stack, fhir, tiny_studies, stack
):
    sync_stack.start_worker()
    patients = [f"sync-o{n}" for n in range(1, 11)]
    queue = read_queue(sync_stack.env)
    stack.stop_pacs("main")
    try:
        for n, patient_id in enumerate(patients, start=1):
            put_patient(fhir, patient_id, tiny_patient_id(n))
        wait_until(
            lambda: all(attempts(queue, p) >= 1 for p in patients),
            60,
            what="every sync to have failed once",
        )
        assert not synced(queue, patients)
    finally:
        stack.start_pacs("main")
    wait_until(lambda: synced(queue, patients), 60, 0.5, what="all synced after the outage")
    for n, patient_id in enumerate(patients, start=1):
        assert active_study_uids(fhir, patient_id) == {tiny_studies[tiny_patient_id(n)]}
    assert queue.ledger.count("dead") == 0


def burst_case(sync_stack, fhir, tiny_studies, workers: int, updates_per_patient: int = 5):
    """100 patients x 5 updates = 500 notifications, each one relevant (a new identifier);
    the last update points each patient at its tiny study."""
    from concurrent.futures import ThreadPoolExecutor

    for _ in range(workers):
        sync_stack.start_worker()
    patients = [f"sync-b{n}" for n in range(1, TINY_COUNT + 1)]

    def updates(n: int) -> None:
        patient_id = patients[n - 1]
        for k in range(updates_per_patient - 1):
            put_patient(fhir, patient_id, f"NOSTUDY-{n}-{k}")
        put_patient(fhir, patient_id, tiny_patient_id(n))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(updates, range(1, TINY_COUNT + 1)))
    total = TINY_COUNT * updates_per_patient
    queue = read_queue(sync_stack.env)

    web_logs = [p.log for p in sync_stack.procs if p.name == "web"]

    def delivered() -> int:
        return notifications_logged(web_logs, set(patients))

    # every HAPI delivery answered (queued, coalesced, or unchanged when a sync had already
    # read that version), none dropped
    wait_until(lambda: delivered() >= total, 240, 0.5, what=f"{total} deliveries")
    wait_until(lambda: synced(queue, patients) and queue.drained(), 300, 0.5, what="drained")
    assert delivered() == total
    for n, patient_id in enumerate(patients, start=1):
        assert active_study_uids(fhir, patient_id) == {tiny_studies[tiny_patient_id(n)]}
    runs = sync_intervals([p.log for p in sync_stack.procs if p.name == "worker"])
    assert overlapping(runs) == []
    # coalescing: far fewer syncs than notifications
    assert sum(len(r) for r in runs.values()) < total
    assert queue.huey.pending_count() == 0 and queue.huey.scheduled_count() == 0


def test_a_burst_of_500_patient_updates_is_all_synced(sync_stack, fhir, tiny_studies):
    burst_case(sync_stack, fhir, tiny_studies, workers=1)


@pytest.mark.redis
def test_a_burst_of_500_updates_with_redis_and_two_workers(sync_stack, fhir, tiny_studies):
    burst_case(sync_stack, fhir, tiny_studies, workers=2)


def test_inactive_patients_are_not_synced_and_a_merge_syncs_the_survivor(
    sync_stack, fhir, tiny_studies
):
    sync_stack.start_worker()
    queue = read_queue(sync_stack.env)
    put_patient(fhir, "sync-inactive", tiny_patient_id(91), active=False)
    wait_until(
        lambda: (s := queue.ledger.get("sync-inactive")) is not None and s.outcome == "inactive",
        60,
        what="inactive rule",
    )
    assert fhir.studies_of("sync-inactive") == []

    # the survivor carries the identifier; the old record points to it (replaced-by)
    put_patient(fhir, "sync-survivor", "NOSTUDY-survivor")
    put_patient(
        fhir,
        "sync-merged",
        tiny_patient_id(92),
        active=False,
        link=[{"type": "replaced-by", "other": {"reference": "Patient/sync-survivor"}}],
    )
    wait_until(
        lambda: (s := queue.ledger.get("sync-merged")) is not None and s.outcome == "merged",
        60,
        what="merge rule",
    )
    put_patient(fhir, "sync-survivor", tiny_patient_id(92))
    wait_until(
        lambda: active_study_uids(fhir, "sync-survivor") == {tiny_studies[tiny_patient_id(92)]},
        60,
        what="the survivor's studies",
    )
    assert fhir.studies_of("sync-merged") == []


@pytest.mark.parametrize("twin_suffix", ["", " "])
def test_a_duplicate_mrn_is_a_conflict_and_the_first_patient_keeps_its_study(
    sync_stack, fhir, tiny_studies, twin_suffix
):
    """Two Patients for one PACS patient (the same MRN, or the same MRN with DICOM padding):
    the second one's sync is a `conflict` (not retried, listed by `dicom-fhir jobs`), and
    the study stays with the first Patient, unchanged."""
    import json
    import subprocess
    import sys

    sync_stack.start_worker()
    queue = read_queue(sync_stack.env)
    mrn = tiny_patient_id(97 if twin_suffix else 96)
    put_patient(fhir, "sync-dup-a", mrn)
    wait_until(
        lambda: active_study_uids(fhir, "sync-dup-a") == {tiny_studies[mrn]},
        60,
        what="the first Patient's study",
    )
    (before,) = fhir.studies_of("sync-dup-a")
    put_patient(fhir, "sync-dup-b", mrn + twin_suffix)
    wait_until(
        lambda: (s := queue.ledger.get("sync-dup-b")) is not None and s.outcome == "conflict",
        60,
        what="the twin's conflict",
    )
    (after,) = fhir.studies_of("sync-dup-a")
    assert after["meta"]["versionId"] == before["meta"]["versionId"]
    assert after["subject"] == {"reference": "Patient/sync-dup-a"}
    assert fhir.studies_of("sync-dup-b") == []
    state = queue.ledger.get("sync-dup-b")
    assert not state.pending and not state.dead and "Patient/sync-dup-a" in state.detail
    jobs = subprocess.run(
        [sys.executable, "-m", "sidecar", "jobs", "--json"],
        env=sync_stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    listed = json.loads(jobs.stdout)
    assert "sync-dup-b" in {s["patient_id"] for s in listed["conflicts"]}
    assert listed["status"]["conflict"] >= 1
