"""The operator's explanations (sidecar/core/sync_explanation.py) and their two shapes, JSON
and R4 Parameters (sidecar/core/sync_report.py): one test per case of the module's table."""

from __future__ import annotations

import json

import pytest

from sidecar.core import sync_explanation as sx
from sidecar.core.mapping import validate_r4
from sidecar.core.sync_explanation import (
    PacsCopy,
    PatientContext,
    StoredStudy,
    StudyFacts,
    SyncRecord,
    explain,
    explain_holders,
)
from sidecar.core.sync_report import PatientReport, StudyReport, StudyRow, order, trigger_json
from sidecar.core.sync_state import PatientSyncState

UID = "1.2.826.0.1.3680043.8.498.1"
NOW = 1_700_000_000.0


def stored(subject="Patient/p1", status="available", series=2, instances=12, ours=True):
    return StoredStudy(UID, subject, status, series, instances, "2024-01-01T00:00:00Z", ours)


def copy(series=2, instances=12, pacs="main"):
    return PacsCopy(pacs, series, instances)


def record(state="idle", **changes) -> SyncRecord:
    base = dict(
        patient_id="p1",
        state=state,
        outcome="synced",
        finished_at=NOW,
        last_error=None,
        attempts=0,
        reason="notify",
        detail=None,
        pending_since=None,
    )
    return SyncRecord(**{**base, **changes})


def context(**changes) -> PatientContext:
    return PatientContext(**{"patient_id": "p1", "mapped": True, **changes})


def state_of(facts: StudyFacts, ctx: PatientContext | None = None) -> sx.Explanation:
    return explain(facts, ctx or context())


def test_in_both_with_the_same_counts_is_up_to_date():
    assert state_of(StudyFacts(UID, (copy(),), stored())).state == sx.UP_TO_DATE


def test_a_pacs_without_counts_does_not_contradict_fhir():
    facts = StudyFacts(UID, (copy(None, None),), stored())
    assert state_of(facts).state == sx.UP_TO_DATE


def test_different_counts_say_both_and_what_comes_next():
    found = state_of(StudyFacts(UID, (copy(3, 14),), stored()), context(sync=record("queued")))
    assert found.state == sx.OUT_OF_DATE
    assert "FHIR has 2 series, 12 instances, the PACS 3 series, 14 instances" in found.text
    assert "queued" in found.text


def test_a_study_filed_in_two_pacs_is_compared_with_its_largest_copy():
    facts = StudyFacts(UID, (copy(1, 4), copy(2, 12, "second")), stored())
    assert state_of(facts).state == sx.UP_TO_DATE


def test_a_withdrawn_study_the_pacs_files_again_is_out_of_date():
    found = state_of(StudyFacts(UID, (copy(),), stored(status="unknown")))
    assert found.state == sx.OUT_OF_DATE and "unknown" in found.text


def test_missing_from_fhir_because_of_an_identity_conflict_names_both_patients():
    found = state_of(StudyFacts(UID, (copy(),), None), context(conflicts=("p2",)))
    assert found.state == sx.IDENTITY_CONFLICT
    assert "Patient/p1 and Patient/p2" in found.text and "409" in found.text


def test_the_conflict_wins_over_a_dead_letter():
    ctx = context(conflicts=("p2",), sync=record("dead", outcome="failed", last_error="x"))
    assert state_of(StudyFacts(UID, (copy(),), None), ctx).state == sx.IDENTITY_CONFLICT


def test_missing_from_fhir_because_the_last_sync_failed_quotes_its_error():
    sync = record("dead", outcome="failed", attempts=1, last_error="HTTP 502: PACS main down")
    found = state_of(StudyFacts(UID, (copy(),), None), context(sync=sync))
    assert found.state == sx.SYNC_FAILED
    assert "1 attempt)" in found.text and "HTTP 502: PACS main down" in found.text


@pytest.mark.parametrize(
    ("state", "words"),
    [("queued", "is queued"), ("running", "running now"), ("retrying", "will be retried")],
)
def test_missing_from_fhir_while_a_sync_is_owed(state, words):
    sync = record(state, reason="operator", attempts=1 if state == "retrying" else 0)
    found = state_of(StudyFacts(UID, (copy(),), None), context(sync=sync))
    assert found.state == sx.SYNC_PENDING
    assert words in found.text and "asked by operator" in found.text


def test_stored_under_another_patient():
    found = state_of(StudyFacts(UID, (copy(),), stored(subject="Patient/p9")))
    assert found.state == sx.STORED_ELSEWHERE
    assert "Patient/p9" in found.text and "moves it here" in found.text


def test_one_uid_for_two_patients_stays_where_it_is():
    facts = StudyFacts(UID, (copy(),), stored(subject="Patient/p9"), filed_under_others=True)
    found = state_of(facts)
    assert found.state == sx.STORED_ELSEWHERE and "one UID for two patients" in found.text


def test_not_synced_yet():
    found = state_of(StudyFacts(UID, (copy(),), None), context(sync=record()))
    assert found.state == sx.NOT_SYNCED and "Re-sync" in found.text


def test_a_resolved_conflict_asks_for_a_re_sync():
    sync = record(outcome="conflict", detail="Patient/p1 and Patient/p2 carry ...")
    found = state_of(StudyFacts(UID, (copy(),), None), context(sync=sync))
    assert found.state == sx.NOT_SYNCED and "now resolved" in found.text


@pytest.mark.parametrize(
    ("outcome", "words"),
    [("inactive", "inactive"), ("merged", "merged"), ("no-identifier", "no identifier")],
)
def test_a_sync_that_did_not_fetch_says_why(outcome, words):
    found = state_of(StudyFacts(UID, (copy(),), None), context(sync=record(outcome=outcome)))
    assert found.state == sx.NOT_SYNCED and words in found.text


@pytest.mark.parametrize("status", ["unknown", "entered-in-error"])
def test_in_fhir_not_in_the_pacs_and_withdrawn(status):
    found = state_of(StudyFacts(UID, (), stored(status=status)))
    assert found.state == sx.WITHDRAWN and status in found.text


def test_in_fhir_not_in_the_pacs_is_withdrawn_by_the_next_sync():
    found = state_of(StudyFacts(UID, (), stored()))
    assert found.state == sx.TO_WITHDRAW and "next sync marks it withdrawn" in found.text


def test_a_study_another_writer_stored_is_left_alone():
    found = state_of(StudyFacts(UID, (), stored(ours=False)))
    assert found.state == sx.TO_WITHDRAW and "not written by this sidecar" in found.text


def test_nothing_is_judged_while_the_pacs_does_not_answer():
    found = state_of(StudyFacts(UID, (), stored()), context(unreachable=("main",)))
    assert found.state == sx.PACS_UNREACHABLE and "main" in found.text


def test_holders_of_a_study_uid():
    assert explain_holders(UID, [], False, None).state == sx.NOT_FOUND
    # a PACS that did not answer: not "not found", which nobody can tell then
    silent = explain_holders(UID, [], False, None, ["main"])
    assert silent.state == sx.PACS_UNREACHABLE and "main" in silent.text
    assert explain_holders(UID, [], False, stored()) is None  # the stored subject's view
    assert explain_holders(UID, ["p1"], True, None) is None  # the holder's view
    conflict = explain_holders(UID, ["p1", "p2"], True, None)
    assert conflict.state == sx.IDENTITY_CONFLICT and "Patient/p1 and Patient/p2" in conflict.text
    nobody = explain_holders(UID, [], True, None)
    assert nobody.state == sx.NO_PATIENT and "no Patient has an identifier" in nobody.text


def test_the_patients_a_conflict_names_are_read_from_its_detail():
    detail = (
        "Patient/p1 and Patient/p-2.x carry identifiers of the same patient of PACS main; "
        "nothing was written. Resolve it on the FHIR server"
    )
    assert sx.patients_named(detail) == ["p1", "p-2.x"]
    assert sx.conflict_patients(detail, "p1") == ["p-2.x"]
    assert record(outcome="conflict", detail=detail).conflict_with == ["p-2.x"]
    assert record(outcome="synced", detail=detail).conflict_with == []


@pytest.mark.parametrize(
    ("changes", "state"),
    [
        ({}, "idle"),
        ({"wanted": 1, "queued": True}, "queued"),
        ({"wanted": 1, "queued": True, "attempts": 2}, "retrying"),
        ({"wanted": 1, "lease": "w", "lease_until": NOW + 30}, "running"),
        ({"wanted": 1, "dead": True}, "dead"),
    ],
)
def test_the_queue_state_of_a_ledger_record(changes, state):
    assert SyncRecord.of(PatientSyncState("p1", **changes), NOW).state == state


def patient_report() -> PatientReport:
    rows = [
        StudyRow(facts, explain(facts, context(conflicts=("p2",))))
        for facts in (
            StudyFacts(UID, (copy(),), stored()),
            StudyFacts("1.2.3", (copy(1, 1),), None),
        )
    ]
    return PatientReport(
        "p1",
        pacs_patients=(("main", "urn:example:mrn:hosp-a"),),
        refused=(),
        conflicts={"p2": ("main",)},
        unreachable={"second": "PACS second is unavailable"},
        sync=record("dead", outcome="failed", attempts=1, last_error="HTTP 502"),
        studies=tuple(order(rows)),
    )


def test_the_patient_report_as_json_puts_problems_first_and_counts_states():
    data = patient_report().to_json()
    json.dumps(data)  # plain JSON
    assert [s["state"] for s in data["studies"]] == [sx.IDENTITY_CONFLICT, sx.UP_TO_DATE]
    assert data["counts"] == {sx.IDENTITY_CONFLICT: 1, sx.UP_TO_DATE: 1}
    assert data["conflicts"] == [{"patient": "Patient/p2", "pacs": ["main"]}]
    assert data["sync"]["finishedAt"] == "2023-11-14T22:13:20Z"
    assert data["pacsPatients"] == [{"pacs": "main", "system": "urn:example:mrn:hosp-a"}]
    first = data["studies"][1]
    assert first["fhir"]["imagingStudy"] == f"ImagingStudy/{UID}"
    assert first["pacs"] == [{"pacs": "main", "series": 2, "instances": 12}]


def test_the_patient_report_is_a_valid_r4_parameters_resource():
    parameters = patient_report().to_parameters()
    validate_r4(parameters)
    names = [p["name"] for p in parameters["parameter"]]
    assert names[0] == "patient" and names.count("study") == 2
    assert {"sync", "conflict", "unreachable", "count", "pacsPatient"} <= set(names)
    study = next(p for p in parameters["parameter"] if p["name"] == "study")
    parts = {p["name"]: p for p in study["part"]}
    assert parts["studyInstanceUid"]["valueOid"] == "urn:oid:1.2.3"
    assert parts["state"]["valueCode"] == sx.IDENTITY_CONFLICT


def test_a_study_report_names_its_patients_by_id():
    report = StudyReport(
        UID,
        pacs=(copy(),),
        holders=("p1", "p2"),
        stored=None,
        patient_id=None,
        sync=None,
        explanation=explain_holders(UID, ["p1", "p2"], True, None),
    )
    data = report.to_json()
    assert data["patients"] == ["Patient/p1", "Patient/p2"] and data["fhir"] is None
    assert data["state"] == sx.IDENTITY_CONFLICT


def test_a_trigger_and_a_source_as_the_overview_shows_them():
    trigger = trigger_json(
        "pacs:main",
        {
            "interval": 5,
            "last_ok": NOW,
            "last_run": NOW,
            "error": "ConnectionError: http://pacs/studies?00100020=SECRET",
            "lag": 3,
            "lag_unit": "changes",
            "cursor": "42",
            "holder": "host:1:abc",
            "enqueued": 7,
        },
    )
    assert trigger["kind"] == "trigger" and trigger["running"] and trigger["lag"] == 3
    assert trigger["lastSuccess"] == "2023-11-14T22:13:20Z"
    assert "SECRET" not in trigger["lastError"]  # redacted: identifier values are PHI
    source = trigger_json("notify", {"enqueued": 2, "cursor": None, "holder": None})
    assert source == {**source, "kind": "source", "enqueued": 2, "lastSuccess": None}
