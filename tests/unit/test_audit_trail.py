"""The gateway's retrievals, aggregated (sidecar/usecases/audit_trail.py)."""

from __future__ import annotations

import threading

import pytest

from sidecar.core.caller import Caller
from sidecar.usecases.audit_trail import RetrievalAggregator


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class ListSink:
    def __init__(self) -> None:
        self.events: list[dict] = []
        self.lock = threading.Lock()

    def record(self, event):
        with self.lock:
            self.events.append(event)

    def record_all(self, events):
        for e in events:
            self.record(e)


def caller(token: str = "token-a") -> Caller:
    return Caller(token, "https://auth", "u1", "viewer", frozenset(), 0, fhir_user="Patient/p1")


def requests_of(event) -> int:
    study = next(e for e in event["entity"] if e.get("detail"))
    return int(next(d["valueString"] for d in study["detail"] if d["type"] == "requests"))


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sink():
    return ListSink()


@pytest.fixture
def aggregator(sink, clock):
    return RetrievalAggregator(sink, 60, 10, clock=clock, background=False)


def test_the_first_request_is_recorded_at_once_later_ones_only_count(aggregator, sink, clock):
    aggregator.seen(caller(), "p1", "1.2.3", "main", 200, "wado")
    assert len(sink.events) == 1 and requests_of(sink.events[0]) == 1
    for _ in range(20):
        clock.now += 0.2
        aggregator.seen(caller(), "p1", "1.2.3", "main", 200, "wado")
    assert len(sink.events) == 1  # 4 s later: nothing new on record yet


def test_the_same_event_is_recorded_again_with_the_count_every_flush(aggregator, sink, clock):
    aggregator.seen(caller(), "p1", "1.2.3", "main", 200, "wado")
    clock.now += 5
    aggregator.seen(caller(), "p1", "1.2.3", "main", 200, "wado")
    clock.now += 6  # 11 s after the first record
    aggregator.seen(caller(), "p1", "1.2.3", "main", 200, "wado")
    first, again = sink.events
    assert again["id"] == first["id"] and requests_of(again) == 3
    assert again["period"]["start"] == first["period"]["start"]
    assert again["period"]["end"] > first["period"]["end"]


def test_flush_records_due_counts_and_closes_old_windows(aggregator, sink, clock):
    aggregator.seen(caller(), "p1", "1.2.3", "main", 200, "wado")
    clock.now += 1
    aggregator.seen(caller(), "p1", "1.2.3", "main", 200, "wado")
    assert aggregator.flush() == 0  # not due yet
    clock.now += 10
    assert aggregator.flush() == 1 and requests_of(sink.events[-1]) == 2
    assert aggregator.flush() == 0  # nothing new
    clock.now += 60
    aggregator.seen(caller(), "p1", "1.2.3", "main", 200, "wado")
    assert aggregator.flush() == 0 and aggregator.open_windows == 1
    assert sink.events[-1]["id"] != sink.events[0]["id"]  # a new window, a new event


def test_a_closed_window_is_recorded_once_more_before_the_next_opens(aggregator, sink, clock):
    aggregator.seen(caller(), "p1", "1.2.3", "main", 200, "wado")
    clock.now += 1
    aggregator.seen(caller(), "p1", "1.2.3", "main", 200, "wado")
    clock.now += 60
    aggregator.seen(caller(), "p1", "1.2.3", "main", 200, "wado")
    first, closing, second = sink.events
    assert closing["id"] == first["id"] and requests_of(closing) == 2
    assert second["id"] != first["id"] and requests_of(second) == 1


@pytest.mark.parametrize(
    "other",
    [
        (caller("token-b"), "p1", "1.2.3", "main", 200, "wado"),
        (caller(), "p1", "1.2.4", "main", 200, "wado"),
        (caller(), "p1", "1.2.3", "second", 200, "wado"),
        (caller(), "p1", "1.2.3", "main", 404, "wado"),
        (caller(), "p1", "1.2.3", "main", 200, "qido"),
        (None, None, "1.2.3", "main", 401, "wado"),
    ],
)
def test_token_study_pacs_outcome_and_kind_each_make_their_own_event(aggregator, sink, other):
    aggregator.seen(caller(), "p1", "1.2.3", "main", 200, "wado")
    aggregator.seen(*other)
    assert len({e["id"] for e in sink.events}) == 2


def test_memory_is_bounded_the_oldest_window_is_recorded_and_forgotten(sink, clock):
    aggregator = RetrievalAggregator(sink, 60, 10, clock=clock, background=False, max_windows=3)
    for i in range(3):
        aggregator.seen(caller(), "p1", f"1.2.{i}", "main", 200, "wado")
    aggregator.seen(caller(), "p1", "1.2.0", "main", 200, "wado")  # counted, not yet recorded
    aggregator.seen(caller(), "p1", "1.2.9", "main", 200, "wado")  # evicts 1.2.0
    assert aggregator.open_windows == 3
    evicted = [e for e in sink.events if e["id"] == sink.events[0]["id"]]
    assert [requests_of(e) for e in evicted] == [1, 2]


def test_close_records_every_pending_count(aggregator, sink, clock):
    aggregator.seen(caller(), "p1", "1.2.3", "main", 200, "wado")
    aggregator.seen(caller(), "p1", "1.2.3", "main", 200, "wado")
    aggregator.close()
    assert [requests_of(e) for e in sink.events] == [1, 2] and aggregator.open_windows == 0


def test_concurrent_requests_are_all_counted(aggregator, sink, clock):
    def read() -> None:
        for _ in range(250):
            aggregator.seen(caller(), "p1", "1.2.3", "main", 200, "wado")

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    aggregator.close()
    assert requests_of(sink.events[-1]) == 1000


def test_a_failing_sink_never_fails_the_retrieval(clock):
    class Broken:
        def record(self, event):
            raise RuntimeError("a sink that breaks its contract")

    aggregator = RetrievalAggregator(Broken(), clock=clock, background=False)
    aggregator.seen(caller(), "p1", "1.2.3", "main", 200, "wado")  # no exception


def test_the_background_thread_records_without_further_requests(sink):
    aggregator = RetrievalAggregator(sink, 60, 0.05)
    aggregator.seen(caller(), "p1", "1.2.3", "main", 200, "wado")
    aggregator.seen(caller(), "p1", "1.2.3", "main", 200, "wado")
    deadline = threading.Event()
    for _ in range(100):
        if len(sink.events) >= 2:
            break
        deadline.wait(0.05)
    aggregator.close()
    assert requests_of(sink.events[1]) == 2
