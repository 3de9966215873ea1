"""HueySyncQueue on real storage (a SQLite file; Redis with the ``redis`` mark): keying by
patient, coalescing, retries, dead letters, crash recovery. Jobs run in this process."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import uuid
from datetime import datetime, timedelta

import pytest

from sidecar.core.sync_state import SyncFailed, SyncOutcome
from sidecar.settings import SyncSettings
from subscription_handlers.adapters.queue import HueySyncQueue
from tests.integration.conftest_sync import redis_server  # noqa: F401 - fixture


class Runner:
    """A fake use case: records calls, can fail, can be slow; detects overlapping runs."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail_with: SyncFailed | None = None
        self.fail_times = 0
        self.sleep = 0.0
        self.running: set[str] = set()
        self.overlaps = 0
        self.follow_up: dict[str, tuple[str, ...]] = {}
        self.refreshes: list[str] = []
        self.study_refreshes: list[tuple[str, frozenset[str]]] = []
        self.lock = threading.Lock()

    def __call__(
        self, patient_id: str, refresh: bool = False, studies: frozenset[str] = frozenset()
    ) -> SyncOutcome:
        with self.lock:
            if refresh:
                self.refreshes.append(patient_id)
            if studies:
                self.study_refreshes.append((patient_id, studies))
            if patient_id in self.running:
                self.overlaps += 1
            self.running.add(patient_id)
            self.calls.append(patient_id)
        try:
            time.sleep(self.sleep)
            if self.fail_with is not None and self.fail_times:
                self.fail_times -= 1
                raise self.fail_with
            return SyncOutcome(
                "synced", f"fp-{patient_id}", follow_up=self.follow_up.get(patient_id, ())
            )
        finally:
            with self.lock:
                self.running.discard(patient_id)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request, tmp_path):
    if request.param == "redis":
        return {"redis_url": request.getfixturevalue("redis_server")}
    return {"queue_path": tmp_path / "queue.sqlite3"}


@pytest.fixture
def make_queue(backend):
    made = []

    def make(**overrides) -> tuple[HueySyncQueue, Runner]:
        runner = Runner()
        values = {
            "queue_name": f"t{uuid.uuid4().hex[:10]}",
            "max_attempts": 3,
            "retry_delay_seconds": 0.01,
            "lease_seconds": 30,
            "stale_queued_seconds": 60,
            **backend,
            **overrides,
        }
        settings = SyncSettings(**values)
        queue = HueySyncQueue(settings, runner=runner)
        made.append(queue)
        return queue, runner

    yield make
    for queue in made:
        queue.huey.flush()
        queue.ledger.clear()
        queue.close()


def drain(queue: HueySyncQueue, *, scheduled: bool = True) -> int:
    """Run every message (and every scheduled retry) until none is left."""
    for ran in range(1000):
        if scheduled:
            future = datetime.utcnow() + timedelta(hours=1)
            for task in queue.huey.read_schedule(future):
                queue.huey.enqueue(task)
        task = queue.huey.dequeue()
        if task is None:
            return ran
        queue.huey.execute(task)
    raise AssertionError("the queue does not drain")


def test_a_notification_runs_one_sync(make_queue):
    queue, runner = make_queue()
    assert queue.submit("p1", "a") == "queued"
    assert queue.status()["pending"] == 1 and queue.huey.pending_count() == 1
    drain(queue)
    assert runner.calls == ["p1"]
    state = queue.ledger.get("p1")
    assert state.synced_fp == "fp-p1" and state.outcome == "synced" and not state.pending
    assert queue.drained()


def test_a_burst_for_one_patient_runs_one_sync(make_queue):
    queue, runner = make_queue()
    decisions = [queue.submit("p1", f"fp{i}") for i in range(50)]
    assert decisions.count("queued") == 1 and decisions.count("coalesced") == 49
    assert queue.huey.pending_count() == 1
    drain(queue)
    assert runner.calls == ["p1"]


def test_an_irrelevant_update_after_a_sync_costs_no_job(make_queue):
    queue, runner = make_queue()
    queue.submit("p1", "a")
    drain(queue)
    assert queue.submit("p1", "fp-p1") == "unchanged"
    assert queue.huey.pending_count() == 0
    assert queue.submit("p1", "something-else") == "queued"
    drain(queue)
    assert runner.calls == ["p1", "p1"]


def test_patients_are_keyed_separately(make_queue):
    queue, runner = make_queue()
    for i in range(20):
        queue.submit(f"p{i}", "x")
        queue.submit(f"p{i}", "y")
    drain(queue)
    assert sorted(runner.calls) == sorted(f"p{i}" for i in range(20))


def test_never_two_syncs_of_one_patient_at_once(make_queue):
    queue, runner = make_queue()
    runner.sleep = 0.3
    queue.submit("p1", "a")
    first = queue.huey.dequeue()
    worker = threading.Thread(target=queue.huey.execute, args=(first,))
    worker.start()
    time.sleep(0.1)  # the first sync is running now
    assert queue.submit("p1", "b") == "coalesced"  # covered by the running job's follow-up
    queue._enqueue("p1")  # a duplicate message (e.g. from another replica) is harmless
    second = queue.huey.dequeue()
    assert queue.huey.execute(second) is None
    assert queue.execute("p1") == "skipped"
    worker.join()
    assert queue.huey.pending_count() == 1  # the follow-up for notification "b"
    drain(queue)
    assert runner.calls == ["p1", "p1"] and runner.overlaps == 0
    assert queue.drained()


def test_retries_then_dead_letter_then_retry_by_command(make_queue):
    queue, runner = make_queue()
    runner.fail_with = SyncFailed("HTTP 502: PACS down", retriable=True)
    runner.fail_times = 3
    queue.submit("p1", "a")
    drain(queue)
    assert len(runner.calls) == 3  # max_attempts
    state = queue.ledger.get("p1")
    assert state.dead and state.attempts == 3 and "PACS down" in state.last_error
    assert [s.patient_id for s in queue.dead_letters()] == ["p1"]
    assert queue.status()["dead"] == 1 and queue.status()["pending"] == 0
    assert queue.retry_dead() == ["p1"]
    drain(queue)
    assert len(runner.calls) == 4 and queue.status()["dead"] == 0
    assert queue.ledger.get("p1").outcome == "synced"


def test_a_transient_outage_recovers_within_the_retries(make_queue):
    queue, runner = make_queue()
    runner.fail_with = SyncFailed("HTTP 504", retriable=True)
    runner.fail_times = 2
    queue.submit("p1", "a")
    drain(queue)
    assert len(runner.calls) == 3 and queue.ledger.get("p1").outcome == "synced"


def test_a_permanent_error_is_a_dead_letter_at_once(make_queue):
    queue, runner = make_queue()
    runner.fail_with = SyncFailed("HTTP 400", retriable=False)
    runner.fail_times = 1
    queue.submit("p1", "a")
    drain(queue)
    assert len(runner.calls) == 1 and queue.ledger.get("p1").dead


def test_a_new_change_revives_a_dead_letter(make_queue):
    queue, runner = make_queue()
    runner.fail_with = SyncFailed("HTTP 400", retriable=False)
    runner.fail_times = 1
    queue.submit("p1", "a")
    drain(queue)
    assert queue.submit("p1", "a") == "queued"
    drain(queue)
    assert queue.ledger.get("p1").outcome == "synced"


def test_a_message_lost_before_it_started_is_requeued(make_queue):
    clock = [1000.0]
    queue, runner = make_queue()
    queue.clock = lambda: clock[0]
    queue.submit("p1", "a")
    queue.submit("p2", "a")
    assert queue.huey.dequeue() is not None  # p1's, taken by a worker that died at once
    assert queue.reconcile() == []  # within the grace an enqueue may still be under way
    clock[0] += 10
    assert queue.reconcile() == ["p1"]  # p2's message is still there: not duplicated
    drain(queue)
    assert sorted(runner.calls) == ["p1", "p2"]


def test_a_job_of_a_killed_worker_is_requeued_at_once(make_queue):
    queue, runner = make_queue()
    dead = subprocess.Popen(["true"])
    dead.wait()
    owner = f"{socket.gethostname()}:{dead.pid}:dead"
    queue.submit("p1", "a")
    queue.huey.dequeue()
    from sidecar.core import sync_state as sm

    assert queue.ledger.update("p1", lambda s: sm.begin(s, owner, time.time(), 600)) is not None
    assert queue.execute("p1") == "skipped"  # the lease looks live to a plain check
    assert queue.reconcile() == ["p1"]  # ...but its owner is a dead process of this host
    drain(queue)
    assert runner.calls == ["p1"]


def test_a_merge_syncs_the_survivor(make_queue):
    queue, runner = make_queue()
    runner.follow_up["old"] = ("survivor",)
    queue.submit("old", "a")
    drain(queue)
    assert runner.calls == ["old", "survivor"]


def test_leases_are_renewed_while_a_sync_runs(make_queue):
    queue, runner = make_queue(lease_seconds=3)
    runner.sleep = 0.5
    queue.submit("p1", "a")
    task = queue.huey.dequeue()
    worker = threading.Thread(target=queue.huey.execute, args=(task,))
    worker.start()
    time.sleep(0.2)
    before = queue.ledger.get("p1").lease_until
    time.sleep(0.1)
    assert queue.renew_leases() == 1
    assert queue.ledger.get("p1").lease_until > before
    worker.join()
    assert queue.renew_leases() == 0


def test_a_refresh_request_reaches_the_job_once(make_queue):
    queue, runner = make_queue()
    queue.submit("p1", None, reason="resync", refresh=True)
    queue.submit("p1", "fp", reason="notify")  # coalesces; the refresh is still owed
    drain(queue)
    assert runner.refreshes == ["p1"]
    assert queue.ledger.get("p1").refresh is False
    queue.submit("p1", None, reason="pacs:main")
    drain(queue)
    assert runner.refreshes == ["p1"] and runner.calls.count("p1") == 2


def test_studies_named_by_a_change_log_are_re_read_once_and_merge(make_queue):
    queue, runner = make_queue()
    queue.submit("p1", None, reason="changes:main", refresh_studies=("1.2.3",))
    queue.submit("p1", None, reason="changes:main", refresh_studies=("1.2.4",))  # coalesces
    drain(queue)
    assert runner.study_refreshes == [("p1", frozenset({"1.2.3", "1.2.4"}))]
    assert queue.ledger.get("p1").refresh_studies == ()  # done: the next sync reuses them
    queue.submit("p1", None, reason="notify")
    drain(queue)
    assert len(runner.study_refreshes) == 1 and runner.calls.count("p1") == 2


def test_too_many_studies_to_re_read_become_a_full_refresh(make_queue):
    from sidecar.core.sync_state import MAX_REFRESH_STUDIES

    queue, runner = make_queue()
    many = tuple(f"1.2.{n}" for n in range(MAX_REFRESH_STUDIES + 1))
    queue.submit("p1", None, reason="changes:main", refresh_studies=many)
    drain(queue)
    assert runner.refreshes == ["p1"] and runner.study_refreshes == []
