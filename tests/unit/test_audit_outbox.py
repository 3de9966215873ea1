"""The audit outbox on real storage: a SQLite file, and Redis (``redis`` mark)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from subscription_handlers.adapters.audit_outbox import (
    FAILURES,
    RedisAuditOutbox,
    SqliteAuditOutbox,
)
from tests.integration.conftest_sync import redis_server  # noqa: F401 - fixture


def event(event_id: str, count: int = 1) -> dict:
    return {"resourceType": "AuditEvent", "id": event_id, "entity": [{"name": str(count)}]}


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def outbox(request, tmp_path):
    if request.param == "sqlite":
        box = SqliteAuditOutbox(tmp_path / "queue.sqlite3")
        yield box
        box.close()
        return
    import redis

    client = redis.Redis.from_url(request.getfixturevalue("redis_server"))
    yield RedisAuditOutbox(client, prefix=f"test-{uuid.uuid4().hex[:8]}")
    client.close()


def test_events_wait_in_order_until_removed(outbox):
    outbox.record(event("a"))
    outbox.record_all([event("b"), event("c")])
    waiting = outbox.pending(10)
    assert [p.event["id"] for p in waiting] == ["a", "b", "c"]
    assert outbox.pending(2) == waiting[:2]
    assert outbox.remove(waiting[:2]) == 2
    assert [p.event["id"] for p in outbox.pending(10)] == ["c"] and outbox.count() == 1


def test_recording_an_id_again_replaces_it_and_a_newer_version_survives_the_drain(outbox):
    outbox.record(event("agg", 1))
    sent = outbox.pending(10)
    outbox.record(event("agg", 5))  # recorded while the first version was on its way
    assert outbox.count() == 1
    assert outbox.remove(sent) == 0  # the sent version is gone already
    [newer] = outbox.pending(10)
    assert newer.event["entity"] == [{"name": "5"}]
    assert outbox.remove([newer]) == 1 and outbox.count() == 0


def test_nothing_to_record_or_remove_is_fine(outbox):
    outbox.record_all([])
    assert outbox.remove([]) == 0 and outbox.pending(5) == []


def test_concurrent_recorders_lose_nothing(outbox):
    def record(n: int) -> None:
        for i in range(25):
            outbox.record(event(f"t{n}-{i}"))

    threads = [threading.Thread(target=record, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outbox.count() == 100
    assert len({p.event["id"] for p in outbox.pending(200)}) == 100


def test_sqlite_events_survive_a_new_process_handle(tmp_path):
    SqliteAuditOutbox(tmp_path / "q.sqlite3").record(event("kept"))
    assert [p.event["id"] for p in SqliteAuditOutbox(tmp_path / "q.sqlite3").pending(5)] == ["kept"]


def test_a_store_that_fails_never_raises_into_the_request_and_counts_the_loss(tmp_path):
    outbox = SqliteAuditOutbox(tmp_path / "q.sqlite3")
    outbox._conn().execute("drop table sidecar_audit")  # a store that cannot write
    before = FAILURES.labels("sqlite")._value.get()
    outbox.record(event("lost"))
    assert FAILURES.labels("sqlite")._value.get() == before + 1


def test_recording_is_cheap(tmp_path):
    """One event, one local transaction: well under the 5 % a fetch may grow by."""
    outbox = SqliteAuditOutbox(tmp_path / "q.sqlite3")
    samples = []
    for i in range(50):
        started = time.perf_counter()
        outbox.record(event(f"e{i}"))
        samples.append(time.perf_counter() - started)
    samples.sort()
    assert samples[len(samples) // 2] < 0.05, samples[len(samples) // 2]
