"""The per-patient state machine, transition by transition (pure; no storage)."""

from __future__ import annotations

import json
from dataclasses import replace

from sidecar.core import sync_state as sm
from sidecar.core.sync_state import PatientSyncState

A, B = "host:1:a", "host:2:b"


def delay(attempt: int) -> float:
    return 2.0**attempt


def requested(now=0.0, fp="f1") -> PatientSyncState:
    state, decision = sm.request(None, "p", now, fp)
    assert decision == sm.QUEUED
    return state


def claimed(now=1.0) -> PatientSyncState:
    state, claim = sm.begin(requested(), A, now, 30)
    assert claim is not None
    return state


def test_first_notification_queues():
    state = requested(now=5.0)
    assert (state.wanted, state.done, state.queued, state.pending_since) == (1, 0, True, 5.0)


def test_a_burst_coalesces_into_the_queued_message():
    state = requested()
    for i in range(10):
        state, decision = sm.request(state, "p", 1.0 + i, f"f{i}")
        assert decision == sm.COALESCED
    assert state.wanted == 11 and state.pending_since == 0.0


def test_notifications_during_a_running_sync_coalesce_and_requeue_at_the_end():
    state = claimed()
    state, decision = sm.request(state, "p", 2.0, "f2")
    assert decision == sm.COALESCED and not state.queued
    state, requeue = sm.succeed(state, A, 3.0, "f1", "synced")
    assert requeue and state.queued and state.wanted == 2 and state.done == 1
    assert state.lease is None


def test_success_without_new_notifications_clears_pending():
    state, requeue = sm.succeed(claimed(), A, 4.0, "f1", "synced")
    assert not requeue and not state.pending and state.synced_fp == "f1"
    assert state.last_latency == 4.0 and state.pending_since is None


def test_an_unchanged_fingerprint_after_success_costs_nothing():
    state, _ = sm.succeed(claimed(), A, 4.0, "f1", "synced")
    same, decision = sm.request(state, "p", 5.0, "f1")
    assert decision == sm.UNCHANGED and same == state
    _, decision = sm.request(state, "p", 5.0, "f2")
    assert decision == sm.QUEUED
    _, decision = sm.request(state, "p", 5.0, None)  # forced (delete, manual)
    assert decision == sm.QUEUED


def test_a_second_worker_never_runs_a_leased_patient():
    state = claimed(now=1.0)
    state2, claim = sm.begin(replace(state, queued=True), B, 2.0, 30)
    assert claim is None and state2.lease == A and not state2.queued


def test_an_expired_lease_can_be_taken_over():
    state = claimed(now=1.0)
    _, claim = sm.begin(state, B, 100.0, 30)
    assert claim is not None


def test_duplicate_messages_do_nothing_when_the_work_is_done():
    state, _ = sm.succeed(claimed(), A, 4.0, "f1", "synced")
    new, claim = sm.begin(replace(state, queued=True), B, 5.0, 30)
    assert claim is None and not new.queued


def test_a_lost_lease_does_not_overwrite_the_new_holder():
    state = claimed(now=1.0)
    taken, _ = sm.begin(state, B, 100.0, 30)
    after, requeue = sm.succeed(taken, A, 101.0, "f1", "synced")
    assert after == taken and not requeue
    after, retry = sm.fail(taken, A, 101.0, "x", retriable=True, max_attempts=3, delay_for=delay)
    assert after == taken and retry is None


def test_retries_back_off_then_dead_letter():
    state = claimed()
    delays = []
    for attempt in range(1, 4):
        state, retry = sm.fail(
            state, A, 10.0, "PACS down", retriable=True, max_attempts=3, delay_for=delay
        )
        if retry is None:
            break
        delays.append(retry)
        assert state.queued and state.queued_at == 10.0 + retry
        state, claim = sm.begin(state, A, 20.0, 30)
        assert claim is not None and claim.attempt == attempt + 1
    assert delays == [2.0, 4.0]
    assert state.dead and not state.pending and state.last_error == "PACS down"
    assert state.outcome == "failed"


def test_a_permanent_error_is_dead_at_once():
    state, retry = sm.fail(
        claimed(), A, 2.0, "bad", retriable=False, max_attempts=5, delay_for=delay
    )
    assert retry is None and state.dead


def test_a_dead_letter_is_revived_by_retry_or_a_new_change():
    dead, _ = sm.fail(claimed(), A, 2.0, "bad", retriable=False, max_attempts=5, delay_for=delay)
    revived, ok = sm.revive(dead, 3.0)
    assert ok and revived.queued and revived.pending and revived.attempts == 0
    again, decision = sm.request(dead, "p", 3.0, "f1")
    assert decision == sm.QUEUED and again.pending and not again.dead
    assert sm.revive(revived, 4.0)[1] is False


def test_reconcile_requeues_work_lost_with_a_killed_worker():
    state = claimed(now=1.0)  # message consumed, worker killed: lease stays
    assert sm.reconcile(state, 5.0, 60)[1] is False  # lease still live
    assert sm.reconcile(state, 5.0, 60, is_dead_owner=lambda o: o == A)[1] is True
    new, requeue = sm.reconcile(state, 40.0, 60)  # expired
    assert requeue and new.queued and new.lease is None


def test_reconcile_requeues_a_stale_queued_flag_only():
    state = requested(now=0.0)
    assert sm.reconcile(state, 30.0, 60)[1] is False
    assert sm.reconcile(state, 61.0, 60)[1] is True
    done, _ = sm.succeed(claimed(), A, 4.0, "f1", "synced")
    assert sm.reconcile(done, 1000.0, 60)[1] is False


def _as_text(value) -> str:
    if value is None:
        return ""
    return ",".join(value) if isinstance(value, (list, tuple)) else str(value)


def test_state_round_trips_through_its_dict():
    state, _ = sm.request(claimed(), "p1", 2.0, None, refresh_studies=("1.2.3", "1.2.4"))
    assert state.refresh_studies == ("1.2.3", "1.2.4")
    assert PatientSyncState.from_dict(state.to_dict()) == state
    assert PatientSyncState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    as_text = {k: _as_text(v) for k, v in state.to_dict().items()}
    assert PatientSyncState.from_dict(as_text) == state


def test_reconcile_requeues_a_queued_flag_whose_message_is_gone():
    state = requested(now=0.0)  # a worker took the message and died before claiming it
    assert sm.reconcile(state, 3.0, 60, has_message=False)[1] is False  # grace: enqueue racing
    assert sm.reconcile(state, 10.0, 60, has_message=True)[1] is False
    assert sm.reconcile(state, 10.0, 60, has_message=None)[1] is False
    assert sm.reconcile(state, 10.0, 60, has_message=False)[1] is True
