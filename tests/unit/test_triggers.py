"""The triggers beside the Subscription: leases, cursors, and what each one submits.

The queue is real (SQLite under tmp_path, and Redis where a redis-server is installed);
the PACS is the loose fake DICOMweb server (plus a fake Orthanc change log); the FHIR
server is a small stub that answers searches, so each test checks only the trigger's own
decision: which Patients, when the cursor moves.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from sidecar.adapters.dicomweb import DicomwebPacs
from sidecar.adapters.orthanc import OrthancChanges
from sidecar.core.outcome import PacsUnavailable
from sidecar.settings import OrthancChangeLog, load_settings
from sidecar.usecases.health import trigger_report
from subscription_handlers.adapters.coordination import Lease, LeaseLost, SqliteTriggerStore
from subscription_handlers.adapters.queue import HueySyncQueue, owner_is_dead
from subscription_handlers.entry.trigger_runner import TriggerRunner
from subscription_handlers.usecases.triggers.catch_up import CatchUp
from subscription_handlers.usecases.triggers.changes import ChangeLogFeed
from subscription_handlers.usecases.triggers.recent import RecentStudies
from subscription_handlers.usecases.triggers.resync import Resync
from subscription_handlers.usecases.triggers.sweep import StoredStudySweep
from tests.integration.conftest_sync import redis_server  # noqa: F401 - fixture
from tests.unit.fake_dicomweb import FakeDicomWeb, study_row

SYS = "urn:mrn"


def _hapi_value(text: str) -> str:
    """How HAPI compares a token value: trimmed, control characters dropped."""
    return re.sub(r"[\x00-\x1f\x7f]", "", text).strip()


class StubFhir:
    """Patients and ImagingStudies in memory. ``search`` is as loose as HAPI's token search
    and no looser: ``identifier=system|value,...`` (OR; ``\\`` escapes), the system compared
    exactly, the value trimmed and without control characters, against EVERY identifier of a
    Patient, whatever its use, period or link (the rules are the sidecar's to apply)."""

    def __init__(self) -> None:
        self.patients: dict[str, dict] = {}
        self.studies: list[dict] = []

    def add_patient(
        self,
        pid: str,
        mrn: str | None = None,
        updated: str = "2026-01-01T00:00:00.000+00:00",
        *,
        identifiers: list[dict] | None = None,
        **elements,
    ):
        self.patients[pid] = {
            "resourceType": "Patient",
            "id": pid,
            "identifier": identifiers or [{"system": SYS, "value": mrn}],
            "meta": {"lastUpdated": updated},
            **elements,
        }

    def search(self, resource_type, params, limit):
        assert resource_type == "Patient"
        wanted = set()
        for token in re.split(r"(?<!\\),", params["identifier"]):
            system, bar, value = token.partition("|") if "|" in token else ("", "", token)
            unescape = lambda s: re.sub(r"\\(.)", r"\1", s)  # noqa: E731
            wanted.add((unescape(system) if bar else None, _hapi_value(unescape(value))))
        return [
            p
            for p in self.patients.values()
            if any(
                (system is None or i.get("system") == system)
                and _hapi_value(i.get("value", "")) == value
                for i in p.get("identifier", [])
                for system, value in wanted
            )
        ][:limit]

    def iterate(self, resource_type, params):
        if resource_type == "Patient":
            since = params.get("_lastUpdated", "ge0000")[2:]
            items = sorted(self.patients.values(), key=lambda p: p["meta"]["lastUpdated"])
            return iter([p for p in items if p["meta"]["lastUpdated"] >= since])
        return iter(list(self.studies))

    def read_many(self, resource_type, ids):
        return {i: self.patients[i] for i in ids if i in self.patients}


@pytest.fixture
def world(tmp_path, httpserver):
    pacs_server = FakeDicomWeb(httpserver).install()
    settings = load_settings(
        {
            "SIDECAR_DATA_DIR": str(tmp_path),
            "SIDECAR_PATIENT_IDENTIFIERS": SYS,
            "SIDECAR_PACS_MAIN_URL": pacs_server.url,
            "SIDECAR_PACS_RETRIES": "0",
        }
    )
    queue = HueySyncQueue(settings.sync, runner=lambda *job: None)
    client = DicomwebPacs(settings.pacs["main"], settings.qido)
    yield settings, queue, client, pacs_server, StubFhir()
    client.close()
    queue.close()


def pending(queue) -> dict[str, str]:
    return {s.patient_id: s.reason for s in queue.pending()}


def step(trigger, queue, owner: str = "tests"):
    """One step of ``trigger`` under its lease, as the runner takes it."""
    assert queue.triggers.acquire(trigger.name, owner, 60, lambda o: False)
    return trigger.step(Lease(queue.triggers, trigger.name, owner))


# -- leases and cursors ------------------------------------------------------------------------


def test_one_holder_at_a_time_expiry_and_a_dead_holder_taken_over(tmp_path):
    store = SqliteTriggerStore(tmp_path / "q.sqlite3")
    alive = lambda owner: False  # noqa: E731
    assert store.acquire("t", "a", 0.3, alive)
    assert not store.acquire("t", "b", 0.3, alive)
    assert store.acquire("t", "a", 0.3, alive)  # the holder renews
    time.sleep(0.35)
    assert store.acquire("t", "b", 0.3, alive)  # expired: taken over
    assert store.holder("t") == "b"
    assert store.acquire("t", "c", 30, lambda owner: owner == "b")  # b died: at once
    store.release("t", "c")
    assert store.holder("t") is None


def test_a_holder_that_lost_its_lease_cannot_move_the_cursor(tmp_path):
    store = SqliteTriggerStore(tmp_path / "q.sqlite3")
    alive = lambda owner: False  # noqa: E731
    assert store.acquire("t", "a", 0.2, alive)
    stalled = Lease(store, "t", "a")
    stalled.move("10")
    time.sleep(0.25)  # a paused the whole lease; b takes over and moves on
    assert store.acquire("t", "b", 30, alive)
    Lease(store, "t", "b").move("20")
    with pytest.raises(LeaseLost):
        stalled.move("11")  # a wakes up with its old batch
    assert store.cursor("t") == "20"


def test_the_runner_records_nothing_for_a_step_whose_lease_was_lost(world):
    *_, queue, _, _, _ = world

    class Stalled:
        name, interval = "stalled", 0.01

        def step(self, lease):
            queue.triggers.release(self.name, lease.owner)  # another process takes over
            queue.triggers.acquire(self.name, "other", 30, lambda o: False)
            lease.move("old")
            raise AssertionError("the move must fail")

    runner = TriggerRunner(Stalled(), queue, lease_seconds=30)
    queue.triggers.acquire("stalled", runner.owner, 30, lambda o: False)
    assert runner.run_step() is None
    status = queue.triggers.statuses().get("stalled", {})
    assert status.get("cursor") is None and not status.get("error")


def test_a_stalled_runner_does_not_take_a_lapsed_lease_back_and_move_the_cursor(world):
    *_, queue, _, _, _ = world
    store = queue.triggers

    class Stalled:
        name, interval = "stalled", 60

        def step(self, lease):
            # the holder stalls past its lease: it lapses, b takes over, moves, lets go
            store.release(self.name, lease.owner)
            assert store.acquire(self.name, "b", 30, lambda o: False)
            Lease(store, self.name, "b").move("new")
            store.release(self.name, "b")
            time.sleep(0.3)  # the holder's renewer runs meanwhile (every 0.1 s)
            lease.move("old")  # it wakes up with its old batch
            raise AssertionError("the move must fail")

    runner = TriggerRunner(Stalled(), queue, lease_seconds=0.3)
    assert store.acquire("stalled", runner.owner, 0.3, lambda o: False)
    assert runner.run_step() is None
    assert store.cursor("stalled") == "new"
    assert store.holder("stalled") is None  # the renewer did not take the free lease


def test_renew_extends_only_a_live_lease_of_its_holder(tmp_path):
    store = SqliteTriggerStore(tmp_path / "q.sqlite3")
    alive = lambda owner: False  # noqa: E731
    assert store.acquire("t", "a", 0.2, alive)
    assert store.renew("t", "a", 0.2) and not store.renew("t", "b", 0.2)
    time.sleep(0.25)
    assert not store.renew("t", "a", 30)  # lapsed: acquiring again is the loop's decision
    assert store.holder("t") is None


def test_a_dead_process_of_this_host_is_recognised():
    import os
    import socket

    assert not owner_is_dead(f"{socket.gethostname()}:{os.getpid()}:x")
    assert owner_is_dead(f"{socket.gethostname()}:999999:x")


def test_a_cursor_and_status_survive_a_new_store(tmp_path):
    path = tmp_path / "q.sqlite3"
    store = SqliteTriggerStore(path)
    store.set_cursor("changes:main", "41")
    store.update_status("changes:main", {"lag": 3}, enqueued=2)
    again = SqliteTriggerStore(path).statuses()["changes:main"]
    assert again["cursor"] == "41" and again["lag"] == 3 and again["enqueued"] == 2


@pytest.mark.redis
def test_the_redis_store_leases_and_counts(request):
    import redis

    from subscription_handlers.adapters.coordination import RedisTriggerStore

    client = redis.Redis.from_url(request.getfixturevalue("redis_server"))
    prefix = f"t{time.time_ns()}"
    store = RedisTriggerStore(client, prefix)
    alive = lambda owner: False  # noqa: E731
    assert store.acquire("t", "a", 1, alive) and not store.acquire("t", "b", 1, alive)
    assert store.acquire("t", "b", 1, lambda owner: owner == "a")
    store.set_cursor("t", "7")
    assert not store.set_cursor("t", "8", owner="a")  # a lost the lease to b
    assert store.set_cursor("t", "7", owner="b")
    assert store.renew("t", "b", 1) and not store.renew("t", "a", 1)
    store.update_status("t", {"lag": 1}, enqueued=3)
    store.update_status("t", {}, enqueued=1)
    status = store.statuses()["t"]
    assert status["cursor"] == "7" and status["enqueued"] == 4 and status["holder"] == "b"
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def test_the_runner_records_a_failure_and_the_next_success(world):
    *_, queue, _, _, _ = world

    class Flaky:
        name, interval, calls = "flaky", 0.01, 0

        def step(self, lease):
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError("PACS down")
            from sidecar.ports import StepReport

            return StepReport(lag=0)

    trigger = Flaky()
    runner = TriggerRunner(trigger, queue, lease_seconds=3)
    runner.run_step()
    assert "PACS down" in queue.triggers.statuses()["flaky"]["error"]
    # a trigger that never succeeded is a problem too, not a count-only source
    assert "PACS down" in trigger_report(queue)["flaky"]["problem"]
    runner.run_step()
    status = queue.triggers.statuses()["flaky"]
    assert status["error"] is None and status["last_ok"] and status["interval"] == 0.01


def test_two_runners_never_step_at_once(world):
    *_, queue, _, _, _ = world
    overlaps, running = [], set()

    class Slow:
        name, interval = "slow", 0.01

        def step(self, lease):
            from sidecar.ports import StepReport

            if running:
                overlaps.append(1)
            running.add(1)
            time.sleep(0.05)
            running.clear()
            return StepReport()

    stop = threading.Event()
    runners = [TriggerRunner(Slow(), queue, lease_seconds=3) for _ in range(2)]
    for r in runners:
        r.start(stop)
    time.sleep(0.6)
    stop.set()
    for r in runners:
        r.thread.join(2)
    assert not overlaps


# -- Orthanc's change log -------------------------------------------------------------------


class FakeOrthanc:
    """``/changes`` and ``/studies/{id}`` of an Orthanc, on the same fake server."""

    def __init__(self, server) -> None:
        self.changes: list[dict] = []
        self.studies: dict[str, str] = {}  # Orthanc id -> StudyInstanceUID
        server.expect_request("/orthanc/changes").respond_with_handler(self._changes)
        server.expect_request(re.compile(r"^/orthanc/studies/.*")).respond_with_handler(self._study)

    def add(self, change_type: str, orthanc_id: str, uid: str) -> None:
        self.studies[orthanc_id] = uid
        seq = len(self.changes) + 1
        self.changes.append(
            {"ChangeType": change_type, "ResourceType": "Study", "ID": orthanc_id, "Seq": seq}
        )

    def _changes(self, request):
        from werkzeug import Response

        last = len(self.changes)
        if "last" in request.args:
            return Response(json.dumps({"Changes": [], "Done": True, "Last": last}))
        since, limit = int(request.args["since"]), int(request.args.get("limit", 100))
        page = [c for c in self.changes if c["Seq"] > since][:limit]
        covered = page[-1]["Seq"] if page else last
        body = {"Changes": page, "Done": covered >= last, "Last": covered}
        return Response(json.dumps(body), content_type="application/json")

    def _study(self, request):
        from werkzeug import Response

        uid = self.studies.get(request.path.rpartition("/")[2])
        if uid is None:
            return Response("{}", status=404)
        return Response(json.dumps({"MainDicomTags": {"StudyInstanceUID": uid}}))


def _feed_at(world, path: str) -> ChangeLogFeed:
    settings, queue, client, pacs_server, fhir = world
    pacs = settings.pacs["main"]
    log = OrthancChangeLog(url=pacs_server.server.url_for(path))
    changes = OrthancChanges(pacs, log, settings.qido)
    return ChangeLogFeed(pacs, log.poll_seconds, changes, client, fhir, queue)


def test_new_studies_in_the_change_log_submit_their_patients_and_move_the_cursor(world):
    settings, queue, client, pacs_server, fhir = world
    orthanc = FakeOrthanc(pacs_server.server)
    feed = _feed_at(world, "/orthanc")
    orthanc.add("NewStudy", "o-old", "1.0")  # before the cursor existed: the backfill's
    assert step(feed, queue).cursor == "1" and pending(queue) == {}
    fhir.add_patient("p-a", "A1")
    fhir.add_patient("p-b", "B1")
    pacs_server.studies = [study_row("A1", "1.1"), study_row("B1", "1.2"), study_row("C1", "1.3")]
    orthanc.add("NewStudy", "o-1", "1.1")
    orthanc.add("StableStudy", "o-1", "1.1")
    orthanc.add("NewStudy", "o-2", "1.2")
    orthanc.add("NewStudy", "o-3", "1.3")  # no FHIR Patient: nothing
    report = step(feed, queue)
    assert pending(queue) == {"p-a": "changes:main", "p-b": "changes:main"}
    assert report.cursor == "5" and report.lag == 0
    assert queue.triggers.cursor("changes:main") == "5"
    # each named study is re-read in full, whatever its counts say
    assert queue.ledger.get("p-a").refresh_studies == ("1.1",)
    step(feed, queue)  # nothing new
    assert len(queue.pending()) == 2


def test_a_kill_before_the_cursor_moves_resubmits_and_skips_nothing(world):
    settings, queue, client, pacs_server, fhir = world
    orthanc = FakeOrthanc(pacs_server.server)
    feed = _feed_at(world, "/orthanc")
    step(feed, queue)
    fhir.add_patient("p-a", "A1")
    pacs_server.studies = [study_row("A1", "1.1")]
    orthanc.add("NewStudy", "o-1", "1.1")
    store = queue.triggers
    original = store.set_cursor
    store.set_cursor = lambda *args: (_ for _ in ()).throw(SystemExit("kill -9"))
    with pytest.raises(SystemExit):
        step(feed, queue)
    store.set_cursor = original
    assert queue.triggers.cursor("changes:main") == "0"  # not moved: the change is redone
    step(feed, queue)
    assert queue.triggers.cursor("changes:main") == "1"
    assert list(pending(queue)) == ["p-a"]  # submitted twice, queued once


def test_a_change_log_url_that_answers_404_is_an_error_not_an_empty_log(world):
    _, queue, _, pacs_server, _ = world
    # e.g. the DICOMweb root given as Orthanc's REST root: /dicom-web/changes is a 404
    pacs_server.server.expect_request("/dicom-web/changes").respond_with_data("", status=404)
    feed = _feed_at(world, "/dicom-web")
    with pytest.raises(PacsUnavailable, match="no change log .*ORTHANC_URL"):
        step(feed, queue)
    assert queue.triggers.cursor(feed.name) is None


@pytest.mark.parametrize(
    "body",
    [
        {"Changes": [], "Done": True, "Last": 1e15},
        {"Changes": [], "Done": True, "Last": -5},
        {"Changes": [], "Done": True, "Last": "12"},
        {"Changes": [], "Done": True, "Last": True},
        {"Changes": [], "Done": True},
        {"Changes": "none", "Done": True, "Last": 3},
        [1, 2, 3],
    ],
    ids=["float", "negative", "text", "bool", "missing", "changes-not-a-list", "a-list"],
)
def test_a_malformed_change_log_answer_is_an_error_and_moves_no_cursor(world, body):
    _, queue, _, pacs_server, _ = world
    pacs_server.server.expect_request("/bad/changes").respond_with_json(body)
    feed = _feed_at(world, "/bad")
    queue.triggers.set_cursor(feed.name, "7")
    with pytest.raises(PacsUnavailable, match="unusable change log"):
        step(feed, queue)
    assert queue.triggers.cursor(feed.name) == "7"


def test_the_cursor_follows_the_changes_returned_not_the_answers_last(world):
    _, queue, _, pacs_server, fhir = world
    change = {"ChangeType": "NewStudy", "ResourceType": "Study", "ID": "o-9", "Seq": 9}
    server = pacs_server.server
    server.expect_request(
        "/lying/changes", query_string={"since": "7", "limit": "100"}
    ).respond_with_json({"Changes": [change], "Done": True, "Last": 10**15})
    server.expect_request("/lying/changes", query_string={"last": ""}).respond_with_json(
        {"Changes": [], "Done": True, "Last": 9}
    )
    server.expect_request("/lying/studies/o-9").respond_with_json({"MainDicomTags": {}})
    feed = _feed_at(world, "/lying")
    queue.triggers.set_cursor(feed.name, "7")
    assert step(feed, queue).cursor == "9"  # what it read, not the 10**15 it was told
    assert queue.triggers.cursor(feed.name) == "9"


# -- the other triggers ----------------------------------------------------------------------


def test_recent_studies_submit_new_and_grown_studies_once(world):
    settings, queue, client, pacs_server, fhir = world
    fhir.add_patient("p-a", "A1")
    today = datetime.now(UTC).strftime("%Y%m%d")
    row = study_row("A1", "1.1", date=today) | {"00201208": {"vr": "IS", "Value": [1]}}
    pacs_server.studies = [row]
    recent = RecentStudies(
        settings.pacs["main"], settings.pacs["main"].changes, client, fhir, queue
    )
    assert step(recent, queue).enqueued == 1
    queue.ledger.clear()
    assert step(recent, queue).enqueued == 0  # nothing new
    pacs_server.studies = [row | {"00201208": {"vr": "IS", "Value": [2]}}]
    assert step(recent, queue).enqueued == 1


def _recent(world, *rows):
    settings, queue, client, pacs_server, fhir = world
    pacs_server.studies = list(rows)
    return step(
        RecentStudies(settings.pacs["main"], settings.pacs["main"].changes, client, fhir, queue),
        queue,
    )


def _today_row(pid: str, uid: str, issuer: str | None = None) -> dict:
    return study_row(pid, uid, issuer, date=datetime.now(UTC).strftime("%Y%m%d"))


def test_a_trigger_finds_a_patient_by_any_of_its_identifiers_padded_or_not(world):
    """The searched identifier need not be the first, may carry DICOM padding, and another
    system with the same value is somebody else."""
    _, queue, _, _, fhir = world
    fhir.add_patient(
        "p-second",
        identifiers=[{"system": "urn:other", "value": "X"}, {"system": SYS, "value": "A7 "}],
    )
    fhir.add_patient("p-other-system", identifiers=[{"system": "urn:unmapped", "value": "A7"}])
    _recent(world, _today_row("A7", "1.7"))
    assert set(pending(queue)) == {"p-second"}


def test_a_merged_away_patient_never_gets_a_study_from_a_trigger(world):
    """Two Patients carry the MRN; the one merged into the other (link replaced-by) claims
    nothing: only the survivor is synced (the triggers' rule is the use case's rule)."""
    _, queue, _, _, fhir = world
    fhir.add_patient(
        "p-old", "M1", link=[{"type": "replaced-by", "other": {"reference": "Patient/p-new"}}]
    )
    fhir.add_patient("p-new", "M1")
    _recent(world, _today_row("M1", "1.8"))
    assert set(pending(queue)) == {"p-new"}


def test_a_retired_identifier_claims_nothing_in_a_trigger(world):
    _, queue, _, _, fhir = world
    fhir.add_patient("p-retired", identifiers=[{"system": SYS, "value": "R1", "use": "old"}])
    _recent(world, _today_row("R1", "1.9"))
    assert pending(queue) == {}


def stored(uid: str, subject: str) -> dict:
    return {
        "resourceType": "ImagingStudy",
        "id": uid,
        "status": "available",
        "subject": {"reference": f"Patient/{subject}"},
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}],
    }


def test_the_sweep_submits_deleted_and_refiled_studies_and_their_new_owners(world):
    settings, queue, client, pacs_server, fhir = world
    for pid, mrn in (("p-a", "A1"), ("p-b", "B1"), ("p-c", "C1")):
        fhir.add_patient(pid, mrn)
    fhir.studies = [stored("1.1", "p-a"), stored("1.2", "p-b"), stored("1.3", "p-c")]
    # 1.1 still A1's; 1.2 deleted; 1.3 now filed under B1
    pacs_server.studies = [study_row("A1", "1.1"), study_row("B1", "1.3")]
    sweep = StoredStudySweep(settings.pacs["main"], client, fhir, queue, interval=60)
    report = step(sweep, queue)
    assert set(pending(queue)) == {"p-b", "p-c"}
    assert report.extra["checked"] == 3


def test_the_sweep_submits_a_study_that_lost_a_series(world):
    settings, queue, client, pacs_server, fhir = world
    fhir.add_patient("p-a", "A1")
    fhir.add_patient("p-b", "B1")
    fhir.studies = [
        stored("1.1", "p-a") | {"numberOfSeries": 2, "numberOfInstances": 5},
        stored("1.2", "p-b") | {"numberOfSeries": 1, "numberOfInstances": 3},
    ]
    counts = lambda series, instances: {  # noqa: E731
        "00201206": {"vr": "IS", "Value": [series]},
        "00201208": {"vr": "IS", "Value": [instances]},
    }
    pacs_server.studies = [
        study_row("A1", "1.1", **counts(1, 3)),
        study_row("B1", "1.2", **counts(1, 3)),
    ]
    sweep = StoredStudySweep(settings.pacs["main"], client, fhir, queue, interval=60)
    assert step(sweep, queue).enqueued == 1
    assert set(pending(queue)) == {"p-a"}


def test_the_sweep_submits_a_shared_study_when_this_pacs_holds_more_or_its_part_changed(world):
    """Stored with the union of both PACS's series: this PACS holding less is its part; the
    part is news when it changes (a series deleted that only this PACS had), not every sweep."""
    settings, queue, client, pacs_server, fhir = world
    fhir.add_patient("p-a", "A1")
    fhir.add_patient("p-b", "B1")
    both = {"endpoint": [{"reference": "Endpoint/main"}, {"reference": "Endpoint/second"}]}
    fhir.studies = [
        stored("1.1", "p-a") | both | {"numberOfSeries": 2, "numberOfInstances": 4},
        stored("1.2", "p-b") | both | {"numberOfSeries": 1, "numberOfInstances": 3},
    ]
    counts = lambda series, instances: {  # noqa: E731
        "00201206": {"vr": "IS", "Value": [series]},
        "00201208": {"vr": "IS", "Value": [instances]},
    }
    pacs_server.studies = [
        study_row("A1", "1.1", **counts(1, 2)),  # a part: submitted when first seen ...
        study_row("B1", "1.2", **counts(1, 5)),  # more than stored: something unseen
    ]
    sweep = StoredStudySweep(settings.pacs["main"], client, fhir, queue, interval=60)
    assert step(sweep, queue).enqueued == 2
    assert step(sweep, queue).enqueued == 1  # ... and not again while the part is the same
    pacs_server.studies[0] = study_row("A1", "1.1", **counts(1, 1))  # the part changed
    assert step(sweep, queue).enqueued == 2
    assert set(pending(queue)) == {"p-a", "p-b"}


def test_catch_up_submits_changed_patients_once_and_moves_its_cursor(world):
    settings, queue, client, _, fhir = world
    from sidecar import wiring
    from subscription_handlers.usecases.patient_sync import fingerprint_for

    fetch = wiring.build(settings).fetch
    now = datetime.now(UTC)
    recent = (now - timedelta(minutes=5)).isoformat(timespec="milliseconds")
    fhir.add_patient("p-a", "A1", updated=recent)
    fhir.add_patient("p-old", "O1", updated=(now - timedelta(days=3)).isoformat())
    catch_up = CatchUp(fetch, fhir, queue, interval=60, lookback_seconds=3600)
    report = step(catch_up, queue)
    assert pending(queue) == {"p-a": "catch-up"} and report.enqueued == 1
    assert queue.triggers.cursor("catch-up") == recent
    # synced since: an unchanged Patient found again costs nothing
    from sidecar.core.sync_state import begin, succeed

    queue.ledger.update("p-a", lambda s: begin(s, "h:1:x", time.time(), 30))
    fp = fingerprint_for(fetch, fhir.patients["p-a"])
    queue.ledger.update("p-a", lambda s: succeed(s, "h:1:x", time.time(), fp, "synced"))
    assert step(catch_up, queue).enqueued == 0


def test_resync_waits_a_period_then_submits_every_mappable_patient_with_refresh(world):
    settings, queue, _, _, fhir = world
    from sidecar import wiring

    fetch = wiring.build(settings).fetch
    fhir.add_patient("p-a", "A1")
    fhir.add_patient("p-x", "X1")
    fhir.patients["p-x"]["identifier"] = []  # nothing a PACS maps: not submitted
    resync = Resync(fetch, fhir, queue, period=3600)
    assert step(resync, queue).enqueued == 0  # the first period starts now
    queue.triggers.set_cursor("resync", str(time.time() - 7200))
    assert step(resync, queue).enqueued == 1
    (state,) = queue.pending()
    assert state.patient_id == "p-a" and state.refresh and state.reason == "resync"
