"""The per-patient sync state machine: pure transitions, stored by a ledger (SQLite or Redis).

huey moves messages; this record is what makes the queue lose nothing and run nothing twice.
Each patient has one record:

- ``wanted`` counts the notifications (changes) seen, ``done`` the value of ``wanted`` that
  the last successful sync covered; ``wanted > done`` means work is owed.
- ``queued`` says a huey message for the patient exists and has not started: further
  notifications coalesce into it (a burst of updates to one patient runs one sync).
- ``lease``/``lease_until`` name the worker running the patient's sync; a second message
  finding a live lease does nothing, and the lease holder re-queues at the end when
  notifications arrived meanwhile (never two syncs of one patient at once).
- ``dead`` marks a dead letter: the last retry failed; ``jobs retry`` or a new relevant
  notification revives it.

A message lost with a killed worker (dequeued, never finished) leaves ``wanted > done`` with
an expired lease or a stale ``queued``; ``reconcile`` finds it and queues it again.
Every function here takes the current record (or None) and returns the new record and a
decision; the ledgers apply them atomically (SQLite transaction, Redis WATCH/MULTI).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from sidecar.core.redaction import redact

# request() decisions
QUEUED = "queued"  # the caller must enqueue a message for the patient
COALESCED = "coalesced"  # a queued or running job will cover this notification
UNCHANGED = "unchanged"  # nothing relevant changed since the last successful sync

MAX_ERROR_CHARS = 500
#: More studies to re-read than this and the owed sync re-reads every study instead.
MAX_REFRESH_STUDIES = 200
CONFLICT = "conflict"  # the outcome of a sync refused because two Patients claim one patient
#: the outcome of a sync of a Patient the FHIR server never had (or no longer knows)
MISSING = "missing"
#: what a transition returns to drop a patient's record altogether (nothing owed, nothing
#: worth keeping: a Patient that does not exist must not grow the ledger)
FORGOTTEN: Any = object()


@dataclass(frozen=True)
class PatientSyncState:
    patient_id: str
    wanted: int = 0
    done: int = 0
    started: int = 0
    queued: bool = False
    queued_at: float | None = None
    lease: str | None = None
    lease_until: float | None = None
    attempts: int = 0
    dead: bool = False
    dead_at: float | None = None
    last_error: str | None = None
    pending_since: float | None = None
    started_at: float | None = None
    requested_fp: str | None = None
    refresh: bool = False  # the owed sync must re-read every study in full (a resync)
    #: StudyInstanceUIDs the owed sync must re-read in full (a PACS change log named them)
    refresh_studies: tuple[str, ...] = ()
    reason: str | None = None  # the trigger of the last request (notify, pacs:main, ...)
    synced_fp: str | None = None
    synced_at: float | None = None
    outcome: str | None = None
    detail: str | None = None  # what the last outcome means (a conflict names the Patients)
    last_latency: float | None = None

    @property
    def pending(self) -> bool:
        return self.wanted > self.done and not self.dead

    def lease_live(self, now: float, is_dead_owner: Callable[[str], bool] | None = None) -> bool:
        if not self.lease or self.lease_until is None or self.lease_until <= now:
            return False
        return not (is_dead_owner and is_dead_owner(self.lease))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatientSyncState:
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known or value is None or value == "":
                continue
            kind = known[key].type
            if kind == "int":
                value = int(value)
            elif kind == "bool":
                value = value in (True, 1, "1", "True", "true")
            elif kind == "float | None":
                value = float(value)
            elif kind == "tuple[str, ...]":
                # JSON gives a list; a text store gives the comma-joined UIDs
                items = value.split(",") if isinstance(value, str) else value
                value = tuple(str(v) for v in items if v)
            values[key] = value
        return cls(**values)


@dataclass(frozen=True)
class Claim:
    """A worker's right to run one patient's sync now."""

    patient_id: str
    attempt: int  # 1 for the first try after a notification
    pending_since: float | None
    synced_fp: str | None
    refresh: bool = False
    refresh_studies: tuple[str, ...] = ()


def request(
    state: PatientSyncState | None,
    patient_id: str,
    now: float,
    fingerprint: str | None,
    *,
    refresh: bool = False,
    refresh_studies: Iterable[str] = (),
    reason: str | None = None,
) -> tuple[PatientSyncState, str]:
    """A trigger asks for a sync. ``fingerprint`` None forces one (manual, delete, a PACS
    change); ``refresh`` makes it re-read every study in full (the periodic resync),
    ``refresh_studies`` only those (a change log said they changed)."""
    if state is None:
        state = PatientSyncState(patient_id)
    elif (
        fingerprint is not None
        and not state.dead
        and state.wanted == state.done
        and state.synced_fp == fingerprint
    ):
        return state, UNCHANGED
    changes: dict[str, Any] = {
        "wanted": state.wanted + 1,
        "pending_since": state.pending_since if state.pending else now,
        "requested_fp": fingerprint,
        "reason": reason,
        **_refresh_after(state, refresh, refresh_studies),
    }
    if state.dead:  # a new change re-arms a dead letter
        changes.update(dead=False, dead_at=None, attempts=0)
    if state.queued or state.lease_live(now):
        return replace(state, **changes), COALESCED
    return replace(state, **changes, queued=True, queued_at=now), QUEUED


def _refresh_after(
    state: PatientSyncState, refresh: bool, studies: Iterable[str]
) -> dict[str, Any]:
    """What the owed sync must re-read: everything, or the union of the studies asked for."""
    if state.refresh or refresh:
        return {"refresh": True, "refresh_studies": ()}
    wanted = tuple(sorted({*state.refresh_studies, *studies}))
    if len(wanted) > MAX_REFRESH_STUDIES:
        return {"refresh": True, "refresh_studies": ()}
    return {"refresh": False, "refresh_studies": wanted}


def begin(
    state: PatientSyncState | None, owner: str, now: float, lease_seconds: float
) -> tuple[PatientSyncState | None, Claim | None]:
    """A worker dequeued the patient's message: claim it, or do nothing.

    ``owner`` names this one run (``host:pid:nonce``), never a whole process: two threads
    of one worker must not both hold a patient.
    """
    if state is None:
        return None, None
    if state.lease_live(now):
        return replace(state, queued=False), None  # the holder re-queues when it finishes
    if not state.pending:
        return replace(state, queued=False), None  # covered already (duplicate message)
    claimed = replace(
        state,
        queued=False,
        lease=owner,
        lease_until=now + lease_seconds,
        started=state.wanted,
        started_at=now,
    )
    claim = Claim(
        state.patient_id,
        state.attempts + 1,
        state.pending_since,
        state.synced_fp,
        state.refresh,
        state.refresh_studies,
    )
    return claimed, claim


def renew(
    state: PatientSyncState | None, owner: str, now: float, lease_seconds: float
) -> tuple[PatientSyncState | None, bool]:
    if state is None or state.lease != owner:
        return state, False
    return replace(state, lease_until=now + lease_seconds), True


def succeed(
    state: PatientSyncState | None,
    owner: str,
    now: float,
    fingerprint: str | None,
    outcome: str,
    detail: str | None = None,
) -> tuple[PatientSyncState | None, bool]:
    """The sync finished. Returns True when the caller must enqueue a follow-up message."""
    if state is None or state.lease != owner:
        return state, False  # the lease was lost; its new holder owns the record
    latency = now - state.pending_since if state.pending_since is not None else None
    done = max(state.done, state.started)
    new = replace(
        state,
        done=done,
        lease=None,
        lease_until=None,
        attempts=0,
        last_error=None,
        dead=False,
        dead_at=None,
        synced_fp=fingerprint,
        synced_at=now,
        outcome=outcome,
        detail=(detail or None) and redact(detail)[:MAX_ERROR_CHARS],
        last_latency=latency,
        pending_since=None,
        # a refresh asked for while this run went on is still owed; one before it is done
        refresh=state.refresh and state.wanted > done,
        refresh_studies=state.refresh_studies if state.wanted > done else (),
    )
    if new.wanted > done:  # notifications arrived while it ran
        new = replace(new, pending_since=state.started_at or now)
        if not new.queued:
            return replace(new, queued=True, queued_at=now), True
    elif outcome == MISSING and not new.queued:
        return FORGOTTEN, False
    return new, False


def fail(
    state: PatientSyncState | None,
    owner: str,
    now: float,
    error: str,
    *,
    retriable: bool,
    max_attempts: int,
    delay_for: Callable[[int], float],
) -> tuple[PatientSyncState | None, float | None]:
    """The sync failed. Returns the retry delay in seconds, or None (dead letter / lost lease)."""
    if state is None or state.lease != owner:
        return state, None
    attempts = state.attempts + 1
    base = replace(
        state,
        lease=None,
        lease_until=None,
        attempts=attempts,
        last_error=redact(error)[:MAX_ERROR_CHARS],
    )
    if retriable and attempts < max_attempts:
        delay = delay_for(attempts)
        return replace(base, queued=True, queued_at=now + delay), delay
    return replace(base, queued=False, dead=True, dead_at=now, outcome="failed"), None


def reconcile(
    state: PatientSyncState | None,
    now: float,
    stale_seconds: float,
    is_dead_owner: Callable[[str], bool] | None = None,
    has_message: bool | None = None,
    lost_grace: float = 5.0,
) -> tuple[PatientSyncState | None, bool]:
    """Owed work that no message or live worker covers: returns True to enqueue it again.

    ``has_message``: whether the queue holds a message for the patient (None: unknown). A
    ``queued`` flag without a message older than ``lost_grace`` means the message was
    taken by a worker that died before claiming it; without that knowledge the flag is
    trusted for ``stale_seconds``.
    """
    if state is None or not state.pending:
        return state, False
    if state.lease_live(now, is_dead_owner):
        return state, False
    if state.queued and state.queued_at is not None and state.queued_at > now - stale_seconds:
        lost = has_message is False and state.queued_at < now - lost_grace
        if not lost:
            return state, False
    return replace(state, lease=None, lease_until=None, queued=True, queued_at=now), True


def revive(state: PatientSyncState | None, now: float) -> tuple[PatientSyncState | None, bool]:
    """``jobs retry``: a dead letter (or a conflict, once resolved) goes back to the queue."""
    if state is None or not (state.dead or (state.outcome == CONFLICT and not state.pending)):
        return state, False
    return (
        replace(
            state,
            dead=False,
            dead_at=None,
            attempts=0,
            wanted=max(state.wanted, state.done + 1),
            pending_since=now,
            queued=True,
            queued_at=now,
        ),
        True,
    )


# -- the job contract between the queue and the sync use case ------------------------------


@dataclass(frozen=True)
class SyncOutcome:
    """What one patient's sync did; ``fingerprint`` is recorded for the relevance check."""

    status: str  # synced | no-identifier | inactive | merged | deleted | conflict
    fingerprint: str | None
    studies: int = 0
    follow_up: tuple[str, ...] = ()  # patients to sync next (a merge's survivor)
    detail: str = ""


class SyncFailed(Exception):
    """A sync that did not complete; ``retriable`` errors are retried with backoff."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


#: A job: ``runner(patient_id, refresh, refresh_studies)``; ``refresh`` re-reads every
#: study in full, ``refresh_studies`` those StudyInstanceUIDs.
SyncRunner = Callable[[str, bool, frozenset[str]], SyncOutcome]
