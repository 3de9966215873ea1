"""Why a study is, or is not, in FHIR: the operator page's explanations, decided without I/O.

The lookup (``sidecar/usecases/sync_status.py``) gathers, for one Patient or one
StudyInstanceUID, what each PACS files (study-level QIDO rows, PS3.18 10.6: their
NumberOfStudyRelatedSeries (0020,1206) and NumberOfStudyRelatedInstances (0020,1208)), the
ImagingStudy FHIR stores under the study's id, the sync ledger's record of the Patient and
the other Patients claiming the same PACS patient. :func:`explain` names the case:

==========  ========  =====================================================================
in the PACS in FHIR   state
==========  ========  =====================================================================
yes         yes       ``up-to-date`` (same counts) or ``out-of-date`` (they differ)
yes         no        ``identity-conflict`` (another Patient claims the same PACS patient,
                      a 409: nothing is written for either), ``sync-failed`` (a dead
                      letter, with its error), ``sync-pending`` (queued, running, retrying),
                      ``stored-elsewhere`` (stored under another Patient), ``not-synced``
no          yes       ``withdrawn`` (status unknown or entered-in-error) or ``to-withdraw``
                      (the next sync marks it), ``pacs-unreachable`` (no answer to judge by)
==========  ========  =====================================================================

and, for a StudyInstanceUID, :func:`explain_holders` first: ``no-patient`` (no Patient's
identifier names the PACS patient), ``identity-conflict`` (several do), ``not-found``.

Patients are named by FHIR id and studies by UID only: no PatientID value, name or birth
date is in any text here (an operator opens FHIR for more). References: FHIR R4
ImagingStudy.status, numberOfSeries, numberOfInstances
(https://hl7.org/fhir/R4/imagingstudy-definitions.html); docs/fetch-imaging.md (the status
rule for studies that leave a patient), docs/sync.md (retries, dead letters, conflicts).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.core import qido
from sidecar.core.sync_state import CONFLICT, PatientSyncState

UP_TO_DATE = "up-to-date"
OUT_OF_DATE = "out-of-date"
IDENTITY_CONFLICT = "identity-conflict"
SYNC_FAILED = "sync-failed"
SYNC_PENDING = "sync-pending"
STORED_ELSEWHERE = "stored-elsewhere"
NOT_SYNCED = "not-synced"
WITHDRAWN = "withdrawn"
TO_WITHDRAW = "to-withdraw"
PACS_UNREACHABLE = "pacs-unreachable"
NO_PATIENT = "no-patient"
NOT_FOUND = "not-found"
#: every state, in the order an operator should look at them (problems first)
STATES = (
    IDENTITY_CONFLICT,
    SYNC_FAILED,
    NO_PATIENT,
    STORED_ELSEWHERE,
    PACS_UNREACHABLE,
    NOT_SYNCED,
    OUT_OF_DATE,
    SYNC_PENDING,
    TO_WITHDRAW,
    WITHDRAWN,
    NOT_FOUND,
    UP_TO_DATE,
)
#: ImagingStudy.status values a withdrawal sets (sidecar.core.write_plan)
WITHDRAWN_STATUSES = ("unknown", "entered-in-error")
NUMBER_OF_SERIES = "00201206"  # (0020,1206) NumberOfStudyRelatedSeries
NUMBER_OF_INSTANCES = "00201208"  # (0020,1208) NumberOfStudyRelatedInstances
#: a FHIR reference to a Patient in free text (R4 id: [A-Za-z0-9-.]{1,64})
_PATIENT_REFERENCE = re.compile(r"\bPatient/([A-Za-z0-9\-.]{1,64})")


@dataclass(frozen=True)
class PacsCopy:
    """One PACS's study-level row of a study (the counts it reports)."""

    pacs: str
    series: int | None
    instances: int | None

    @classmethod
    def of(cls, pacs: str, record: Mapping[str, Any]) -> PacsCopy:
        return cls(pacs, _count(record, NUMBER_OF_SERIES), _count(record, NUMBER_OF_INSTANCES))


@dataclass(frozen=True)
class StoredStudy:
    """The ImagingStudy FHIR stores for a StudyInstanceUID, whoever its subject is."""

    id: str
    subject: str | None  # "Patient/<id>"
    status: str | None
    series: int | None
    instances: int | None
    last_updated: str | None
    ours: bool = True  # it references an Endpoint of this sidecar (ours to withdraw)

    @classmethod
    def of(cls, resource: Mapping[str, Any], our_endpoints: Iterable[str] = ()) -> StoredStudy:
        endpoints = {(e or {}).get("reference") for e in resource.get("endpoint") or []}
        ours = set(our_endpoints)
        return cls(
            id=str(resource.get("id")),
            subject=(resource.get("subject") or {}).get("reference"),
            status=resource.get("status"),
            series=_int(resource.get("numberOfSeries")),
            instances=_int(resource.get("numberOfInstances")),
            last_updated=(resource.get("meta") or {}).get("lastUpdated"),
            ours=not ours or bool(endpoints & ours),
        )


@dataclass(frozen=True)
class SyncRecord:
    """The sync ledger's record of one Patient, as an operator reads it (the error texts
    were redacted when they were recorded: sidecar.core.redaction)."""

    patient_id: str
    state: str  # idle | queued | running | retrying | dead
    outcome: (
        str | None
    )  # of the last sync: synced, conflict, no-identifier, inactive, merged, failed
    finished_at: float | None  # when the last sync succeeded, or the last attempt failed
    last_error: str | None
    attempts: int  # failed attempts since the last success
    reason: str | None  # the trigger that last asked (update, operator, changes:main, ...)
    detail: str | None  # what the last outcome means (a conflict names the Patients)
    pending_since: float | None

    @classmethod
    def of(cls, state: PatientSyncState, now: float) -> SyncRecord:
        return cls(
            patient_id=state.patient_id,
            state=queue_state(state, now),
            outcome=state.outcome,
            finished_at=state.dead_at if state.dead else state.synced_at,
            last_error=state.last_error,
            attempts=state.attempts,
            reason=state.reason,
            detail=state.detail,
            pending_since=state.pending_since,
        )

    @property
    def busy(self) -> bool:
        return self.state in ("queued", "running", "retrying")

    @property
    def conflict_with(self) -> list[str]:
        """The other Patients the last sync's conflict named (empty unless it was one)."""
        return conflict_patients(self.detail, self.patient_id) if self.outcome == CONFLICT else []


def queue_state(state: PatientSyncState, now: float) -> str:
    """``dead``, ``running`` (a live lease), ``retrying`` (an attempt failed, the next is
    scheduled), ``queued`` (owed, not started) or ``idle``."""
    if state.dead:
        return "dead"
    if state.lease_live(now):
        return "running"
    if state.pending:
        return "retrying" if state.attempts else "queued"
    return "idle"


def patients_named(text: str | None) -> list[str]:
    """The Patient ids a text names as ``Patient/<id>``, in order, once each."""
    return list(dict.fromkeys(_PATIENT_REFERENCE.findall(text or "")))


def conflict_patients(detail: str | None, patient_id: str) -> list[str]:
    """The other Patients a conflict's detail names (the sidecar's 409 names them all)."""
    return [p for p in patients_named(detail) if p != patient_id]


@dataclass(frozen=True)
class StudyFacts:
    """What the lookup found for one StudyInstanceUID, seen from one Patient."""

    uid: str
    pacs: tuple[PacsCopy, ...]  # the PACS that file it under this Patient's identifiers
    stored: StoredStudy | None  # the ImagingStudy of this UID, under this Patient or another
    filed_under_others: bool = False  # a PACS files this UID under another patient as well


@dataclass(frozen=True)
class PatientContext:
    """What holds for all of one Patient's studies."""

    patient_id: str
    mapped: bool  # one of its identifiers maps to a PACS
    unreachable: tuple[str, ...] = ()  # PACS that did not answer
    conflicts: tuple[str, ...] = ()  # other Patients claiming one of its PACS patients
    sync: SyncRecord | None = None


@dataclass(frozen=True)
class Explanation:
    state: str
    text: str


def explain(facts: StudyFacts, context: PatientContext) -> Explanation:
    """The state of one study for one Patient, and what to do about it."""
    own = f"Patient/{context.patient_id}"
    stored = facts.stored
    in_fhir = stored is not None and stored.subject == own
    if facts.pacs and in_fhir:
        assert stored is not None
        return _in_both(facts.pacs, stored, context)
    if facts.pacs:
        return _missing_from_fhir(facts, context)
    if in_fhir:
        assert stored is not None
        return _missing_from_pacs(stored, context)
    return Explanation(NOT_FOUND, "Neither a PACS nor FHIR has this study for this Patient.")


def _in_both(copies: tuple[PacsCopy, ...], stored: StoredStudy, ctx: PatientContext) -> Explanation:
    if stored.status in WITHDRAWN_STATUSES:
        return Explanation(
            OUT_OF_DATE,
            f"FHIR stores it as {stored.status}, but the PACS files it under this Patient "
            f"again: {_next_sync(ctx)}",
        )
    wanted = _pacs_counts(copies)
    if _counts_match(stored, wanted):
        return Explanation(UP_TO_DATE, "In the PACS and in FHIR with the same counts: up to date.")
    return Explanation(
        OUT_OF_DATE,
        f"FHIR has {_counts_text(stored.series, stored.instances)}, the PACS "
        f"{_counts_text(*wanted)}: {_next_sync(ctx)}",
    )


def _missing_from_fhir(facts: StudyFacts, ctx: PatientContext) -> Explanation:
    sync = ctx.sync
    if ctx.conflicts:
        names = " and ".join(f"Patient/{p}" for p in (ctx.patient_id, *ctx.conflicts))
        # FHIR may hold it under the other Patient (written before the conflict): say so
        where = (
            "Not in FHIR"
            if facts.stored is None
            else f"Not under Patient/{ctx.patient_id} in FHIR (it is stored under "
            f"{facts.stored.subject})"
        )
        return Explanation(
            IDENTITY_CONFLICT,
            f"{where}: {names} carry identifiers of the same PACS patient (an identity "
            "conflict, HTTP 409), so nothing is written for either. Resolve it on the FHIR "
            "server (merge the records, retire the wrong identifier with use=old, or correct "
            "it), then re-sync.",
        )
    if sync is not None and sync.state == "dead":
        return Explanation(
            SYNC_FAILED,
            f"Not in FHIR: the last sync failed ({_attempts(sync.attempts)}): "
            f"{sync.last_error or 'no error recorded'}. Retry it once the cause is fixed.",
        )
    if sync is not None and sync.busy:
        return Explanation(SYNC_PENDING, f"Not in FHIR yet: {_busy_text(sync)}")
    stored = facts.stored
    if stored is not None:
        if facts.filed_under_others:
            return Explanation(
                STORED_ELSEWHERE,
                f"Stored under {stored.subject}: the PACS files this StudyInstanceUID under "
                "two patients (one UID for two patients), so the sidecar does not move it. "
                "Fix it in the PACS.",
            )
        return Explanation(
            STORED_ELSEWHERE,
            f"Stored under {stored.subject}: the next sync of this Patient moves it here (the "
            "PACS no longer files it under that Patient's identifiers). Re-sync to do it now.",
        )
    if sync is not None and sync.outcome == CONFLICT:
        return Explanation(
            NOT_SYNCED,
            "Not in FHIR: the last sync was refused for an identity conflict that is now "
            "resolved. Re-sync to fetch it.",
        )
    if sync is not None and sync.outcome in _OUTCOME_TEXT:
        return Explanation(NOT_SYNCED, f"Not in FHIR: {_OUTCOME_TEXT[sync.outcome]}")
    return Explanation(
        NOT_SYNCED,
        "In the PACS, not in FHIR: no sync of this Patient has run since the PACS got it. "
        "Re-sync to fetch it now.",
    )


_OUTCOME_TEXT = {
    "inactive": "the Patient is inactive (Patient.active false): the sidecar does not sync it.",
    "merged": "the Patient was merged into another (link replaced-by): its studies go to the "
    "surviving Patient.",
    "no-identifier": "at the last sync no identifier of this Patient could be sent to a PACS.",
}


def _missing_from_pacs(stored: StoredStudy, ctx: PatientContext) -> Explanation:
    if stored.status in WITHDRAWN_STATUSES:
        return Explanation(
            WITHDRAWN,
            f"In FHIR as {stored.status}: no PACS files it under this Patient any more "
            "(unknown: no PACS holds it; entered-in-error: a PACS files it under another "
            "patient).",
        )
    if ctx.unreachable:
        return Explanation(
            PACS_UNREACHABLE,
            f"In FHIR; PACS {', '.join(ctx.unreachable)} did not answer, so whether it still "
            "holds the study cannot be told now.",
        )
    if not ctx.mapped:
        return Explanation(
            TO_WITHDRAW,
            "In FHIR, but no identifier of this Patient maps to a PACS any more: the sidecar "
            "leaves its studies as they are.",
        )
    if not stored.ours:
        return Explanation(
            TO_WITHDRAW,
            "In FHIR, not in the PACS; it was not written by this sidecar (no Endpoint of "
            "ours), so it is left as it is.",
        )
    return Explanation(
        TO_WITHDRAW,
        "In FHIR, no longer in the PACS for this Patient: the next sync marks it withdrawn "
        f"(status unknown, or entered-in-error if a PACS files it under another patient). "
        f"{_next_sync(ctx)}",
    )


def explain_holders(
    uid: str,
    holders: Iterable[str],
    in_pacs: bool,
    stored: StoredStudy | None,
    unreachable: Iterable[str] = (),
) -> Explanation | None:
    """A StudyInstanceUID's case before any one Patient's view applies: nobody or several
    Patients hold the PACS patient it is filed under, or nobody has it at all. None: one
    Patient holds it (explain it with :func:`explain` from that Patient's context).
    ``unreachable``: the PACSs that did not answer (then "not found" cannot be told)."""
    ids = list(dict.fromkeys(holders))
    silent = list(unreachable)
    if not in_pacs:
        if stored is None and silent:
            return Explanation(
                PACS_UNREACHABLE,
                f"Not in FHIR; PACS {', '.join(silent)} did not answer, so whether it holds "
                "the study (and under which patient) cannot be told now. Look again once it "
                "answers.",
            )
        if stored is None:
            return Explanation(NOT_FOUND, f"Neither a PACS nor FHIR has study {uid}.")
        return None
    if len(ids) > 1:
        names = " and ".join(f"Patient/{p}" for p in ids)
        return Explanation(
            IDENTITY_CONFLICT,
            f"{names} carry identifiers of the PACS patient this study is filed under (an "
            "identity conflict, HTTP 409): nothing is written for either. Resolve it on the "
            "FHIR server (merge the records, retire the wrong identifier with use=old, or "
            "correct it), then re-sync.",
        )
    if not ids and stored is None:
        return Explanation(
            NO_PATIENT,
            "In the PACS, not in FHIR: no Patient has an identifier that maps to the PACS "
            "patient it is filed under. Add the identifier to the right Patient (or create "
            "it); its sync then fetches the study.",
        )
    return None


def summary(states: Iterable[str]) -> dict[str, int]:
    """How many studies are in each state, in :data:`STATES` order."""
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return {s: counts[s] for s in STATES if s in counts}


# -- wording -------------------------------------------------------------------------------


def _next_sync(ctx: PatientContext) -> str:
    sync = ctx.sync
    if sync is not None and sync.busy:
        return _busy_text(sync)
    if sync is not None and sync.state == "dead":
        return f"the last sync failed: {sync.last_error or 'no error recorded'}. Retry it."
    return "the next sync updates it; re-sync to do it now."


def _busy_text(sync: SyncRecord) -> str:
    asked = f" (asked by {sync.reason})" if sync.reason else ""
    if sync.state == "running":
        return f"a sync is running now{asked}."
    if sync.state == "retrying":
        return (
            f"a sync failed ({_attempts(sync.attempts)}: {sync.last_error or 'no error'}) "
            f"and will be retried{asked}."
        )
    return f"a sync is queued{asked}."


def _attempts(n: int) -> str:
    return f"{n} attempt{'s' if n != 1 else ''}"


def _counts_text(series: int | None, instances: int | None) -> str:
    def n(value: int | None) -> str:
        return "?" if value is None else str(value)

    return f"{n(series)} series, {n(instances)} instance{'' if instances == 1 else 's'}"


def _pacs_counts(copies: tuple[PacsCopy, ...]) -> tuple[int | None, int | None]:
    """The counts FHIR should show: a study several PACS hold is one ImagingStudy with the
    union of their series (sidecar.core.mapping.merge); the largest copy is compared."""
    series = [c.series for c in copies if c.series is not None]
    instances = [c.instances for c in copies if c.instances is not None]
    return (max(series) if series else None, max(instances) if instances else None)


def _counts_match(stored: StoredStudy, wanted: tuple[int | None, int | None]) -> bool:
    """Equal where both sides know the count (a PACS that omits a count is not contradicted)."""
    pairs = ((stored.series, wanted[0]), (stored.instances, wanted[1]))
    return all(a == b for a, b in pairs if a is not None and b is not None)


def _count(record: Mapping[str, Any], tag: str) -> int | None:
    return _int(qido.first_value(record, tag))


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None
