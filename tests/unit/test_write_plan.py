"""The write plan, as data in and data out: no FHIR server, no PACS (sidecar/core/write_plan.py)."""

from __future__ import annotations

import pytest

from sidecar.core import write_plan as wp
from sidecar.core.identity import PatientKey

OURS = ["Endpoint/dicomweb-main"]
KEY = PatientKey("main", "urn:mrn", "P1", "HOSP-A")


def study(uid: str, subject: str = "p1", status: str = "available", **extra) -> dict:
    return {
        "resourceType": "ImagingStudy",
        "id": uid,
        "status": status,
        "subject": {"reference": f"Patient/{subject}"},
        "endpoint": [{"reference": "Endpoint/dicomweb-main"}],
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}],
        **extra,
    }


def stored_as(resource: dict, version: str = "3") -> dict:
    return {**resource, "meta": {"versionId": version, "lastUpdated": "2026-01-01T00:00:00Z"}}


def row(patient_id: str, issuer: str | None = "HOSP-A") -> dict:
    record = {"00100020": {"vr": "LO", "Value": [patient_id]}}
    if issuer:
        record["00100021"] = {"vr": "LO", "Value": [issuer]}
    return record


def test_new_changed_and_equal_resources_become_put_if_match_or_nothing():
    endpoint = {"resourceType": "Endpoint", "id": "dicomweb-main", "status": "active"}
    new, changed, same = study("1.1"), study("1.2", description="now"), study("1.3")
    stored = {
        ("Endpoint", "dicomweb-main"): stored_as(endpoint),
        ("ImagingStudy", "1.2"): stored_as(study("1.2"), "7"),
        ("ImagingStudy", "1.3"): stored_as(same),
    }
    plan = wp.plan_writes([endpoint], [new, changed, same], [], stored)
    requests = {e["request"]["url"]: e["request"] for e in plan.entries}
    assert requests == {
        "ImagingStudy/1.1": {"method": "PUT", "url": "ImagingStudy/1.1"},
        "ImagingStudy/1.2": {"method": "PUT", "url": "ImagingStudy/1.2", "ifMatch": 'W/"7"'},
    }
    assert plan.counts == {"created": 1, "updated": 1, "unchanged": 1}
    assert set(plan.unchanged) == {("Endpoint", "dicomweb-main"), ("ImagingStudy", "1.3")}


def test_a_withdrawal_is_an_update_with_a_warning():
    before = stored_as(study("1.4"))
    gone = {**wp.content(before), "status": wp.STATUS_GONE}
    plan = wp.plan_writes([], [], [gone], {("ImagingStudy", "1.4"): before})
    assert plan.counts["updated"] == 1 and plan.entries[0]["resource"]["status"] == "unknown"
    assert "ImagingStudy/1.4" in plan.issues[0]["diagnostics"]


def test_withdrawal_candidates_are_this_patients_active_studies_of_our_pacs_not_returned():
    stored = {
        ("ImagingStudy", "1.1"): study("1.1"),  # returned now: not a candidate
        ("ImagingStudy", "1.2"): study("1.2"),  # candidate
        ("ImagingStudy", "1.3"): study("1.3", status="unknown"),  # already withdrawn
        ("ImagingStudy", "1.4"): study("1.4", subject="p2"),  # someone else's
        ("ImagingStudy", "1.5"): {**study("1.5"), "endpoint": [{"reference": "Endpoint/x"}]},
        ("ImagingStudy", "other-id"): study("1.6"),  # not our id scheme
    }
    found = wp.withdrawal_candidates("p1", ["1.1"], stored, OURS)
    assert list(found) == ["1.2"]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([], wp.STATUS_GONE),  # no PACS holds it
        ([("main", row("P2"))], wp.STATUS_REFILED),  # filed under someone else
        ([("main", row("P1"))], None),  # still this patient's: leave it
        ([("main", row("P1", "HOSP-B"))], wp.STATUS_REFILED),  # same PatientID, other issuer
        ([("second", row("P1"))], wp.STATUS_REFILED),  # another PACS, not a key of ours there
        ([("second", row("P2")), ("main", row("P1"))], None),
    ],
)
def test_the_status_of_a_missing_study(rows, expected):
    assert wp.status_of_missing(rows, [KEY]) == expected


def test_a_move_is_blocked_while_the_pacs_still_files_the_uid_under_the_owner():
    stored = {("ImagingStudy", "1.1"): study("1.1", subject="owner")}
    owners = wp.moving_studies("p1", ["1.1"], stored)
    assert owners == {"1.1": "owner"}
    owner_keys = {"owner": [PatientKey("main", "urn:mrn", "P9", "HOSP-A")]}
    blocked, issues = wp.blocked_moves(owners, stored, owner_keys, {"1.1": [("main", row("P9"))]})
    assert blocked == {"1.1"} and "Patient/owner" in issues[0]["diagnostics"]
    free, none = wp.blocked_moves(owners, stored, owner_keys, {"1.1": [("main", row("P1"))]})
    assert free == set() and none == []


def test_with_version_takes_the_etag_and_last_modified():
    written = wp.with_version(
        {"resourceType": "Endpoint", "id": "e"}, {"etag": 'W/"4"', "lastModified": "t"}
    )
    assert written["meta"] == {"versionId": "4", "lastUpdated": "t"}
