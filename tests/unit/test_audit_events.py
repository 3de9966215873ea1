"""The AuditEvent builders (sidecar/core/audit.py): BALP's shape, R4-valid, value-free."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from sidecar.core import audit
from sidecar.core.caller import Caller

AT = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
ISSUER = "https://auth.example/realms/demo"
#: values that must never appear in an event, whatever a builder is given
MRN, ACCESSION = "MRN-0042-SECRET", "ACC-7777-SECRET"
CLINICIAN = Caller(
    token="header.payload.signature",
    issuer=ISSUER,
    subject="user-17",
    client_id="dicom-fhir-viewer",
    scopes=frozenset({"user/*.rs"}),
    expires_at=0,
    fhir_user="Practitioner/pr1",
)
PATIENT_USER = Caller(
    token="t2",
    issuer=ISSUER,
    subject="user-18",
    client_id=None,
    scopes=frozenset({"patient/*.rs"}),
    expires_at=0,
    patient="p1",
)


def codes(event, path="subtype"):
    return [c["code"] for c in event.get(path) or []]


def agent_codes(event):
    return [[c["code"] for c in a["type"]["coding"]] for a in event["agent"]]


def patient_refs(event):
    return [
        e["what"]["reference"]
        for e in event["entity"]
        if (e.get("role") or {}).get("code") == "1" and "reference" in e.get("what", {})
    ]


CASES = {
    "fetch ok": (
        lambda: audit.fetch_event(
            CLINICIAN,
            "p1",
            [("identifier", f"urn:mrn|{MRN}"), ("modality", "CT"), ("accession", ACCESSION)],
            200,
            ["1.2.840.1", "dcm-abcdef"],
            AT,
            address="10.1.2.3",
        ),
        {"action": "E", "subtype": ["operation", "search-type"], "outcome": "0"},
        ["Patient/p1"],
        [["IRCP"], ["110153", "110150"], ["110152"]],
    ),
    "fetch refused, no token": (
        lambda: audit.fetch_event(None, None, [("identifier", MRN)], 401, [], AT),
        {"action": "E", "subtype": ["operation", "search-type"], "outcome": "4"},
        [],
        [["110153", "110150"], ["110152"]],
    ),
    "fetch failed upstream": (
        lambda: audit.fetch_event(PATIENT_USER, "p1", [], 502, [], AT),
        {"action": "E", "subtype": ["operation", "search-type"], "outcome": "8"},
        ["Patient/p1"],
        [["IRCP"], ["110153", "110150"], ["110152"]],
    ),
    "created by a caller": (
        lambda: audit.write_event("C", "1.2.840.1", "p1", AT, CLINICIAN),
        {"action": "C", "subtype": ["create"], "outcome": "0"},
        ["Patient/p1"],
        [["AUT"], ["110150"], ["110153"], ["110152"]],
    ),
    "updated by the worker": (
        lambda: audit.write_event("U", "1.2.840.1", "p1", AT),
        {"action": "U", "subtype": ["update"], "outcome": "0"},
        ["Patient/p1"],
        [["AUT"], ["110153"], ["110152"]],
    ),
    "wado retrievals": (
        lambda: audit.retrieval_event(
            CLINICIAN, "p1", "1.2.840.1", "main", 200, 12, AT - timedelta(seconds=30), AT, "wado"
        ),
        {"action": "R", "subtype": ["read"], "outcome": "0"},
        ["Patient/p1"],
        [["IRCP"], ["110152", "110150"], ["110153"]],
    ),
    "qido refused": (
        lambda: audit.retrieval_event(None, None, "1.2.840.1", "main", 404, 1, AT, AT, "qido"),
        {"action": "E", "subtype": ["search-type"], "outcome": "4"},
        [],
        [["110153", "110150"], ["110152"]],
    ),
    "refusal with the Patient": (
        lambda: audit.refusal_event(
            CLINICIAN, "$fetch-imaging type level", 404, AT, "::1", patient_id="p1"
        ),
        {"action": "E", "subtype": [], "outcome": "4"},
        ["Patient/p1"],
        [["IRCP"], ["110153", "110150"], ["110152"]],
    ),
    "refusal, invalid token": (
        lambda: audit.refusal_event(None, "WADO-RS series", 401, AT),
        {"action": "E", "subtype": [], "outcome": "4"},
        [],
        [["110153", "110150"], ["110152"]],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_builder_follows_its_balp_pattern(name):
    make, expected, patients, agents = CASES[name]
    event = make()
    assert event["resourceType"] == "AuditEvent"
    assert event["type"]["code"] == "rest" and event["recorded"] == "2026-03-01T12:00:00.000Z"
    assert {k: (codes(event) if k == "subtype" else event[k]) for k in expected} == expected
    assert patient_refs(event) == patients
    assert agent_codes(event) == agents
    assert sum(a["requestor"] for a in event["agent"]) == 1
    assert event["source"]["observer"]["display"] == "dicom-fhir-sidecar"


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_event_is_a_valid_r4_audit_event(name):
    auditevent = pytest.importorskip("fhir.resources.R4B.auditevent")
    event = CASES[name][0]()
    auditevent.AuditEvent.model_validate(event)
    auditevent.AuditEvent.model_validate(audit.dereferenced(event))


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_event_contains_an_identifier_value_it_was_given(name):
    text = json.dumps(CASES[name][0]())
    decoded = [
        base64.b64decode(e["query"]).decode() for e in json.loads(text)["entity"] if "query" in e
    ]
    for secret in (MRN, ACCESSION, CLINICIAN.token):
        assert secret not in text and not any(secret in d for d in decoded)


def test_the_user_is_the_fhir_user_and_the_token_subject_the_app_is_azp():
    event = audit.fetch_event(CLINICIAN, "p1", [], 200, [], AT)
    user, app = event["agent"][:2]
    assert user["who"] == {
        "reference": "Practitioner/pr1",
        "identifier": {"system": ISSUER, "value": "user-17"},
    }
    assert user["requestor"] and not app["requestor"]
    assert app["who"] == {"identifier": {"system": ISSUER, "value": "dicom-fhir-viewer"}}


def test_the_query_keeps_codes_dates_and_uids_and_only_names_identifiers():
    event = audit.fetch_event(
        None,
        "p1",
        [
            ("modality", "CT,MR"),
            ("studyDate", "ge2020-01-01"),
            ("studyInstanceUid", "1.2.3"),
            ("identifier", f"urn:mrn|{MRN}"),
            ("_format", "json"),
            ("surprise", MRN),
        ],
        200,
        [],
        AT,
    )
    query = next(e for e in event["entity"] if "query" in e)
    assert query["description"] == (
        "$fetch-imaging?modality=CT,MR&studyDate=ge2020-01-01&studyInstanceUid=1.2.3"
        " (values not recorded: identifier)"
    )
    assert base64.b64decode(query["query"]).decode() == query["description"]


def test_studies_are_named_by_uid_never_by_a_literal_reference():
    event = audit.write_event("C", "1.2.840.1", "p1", AT)
    study = event["entity"][1]
    assert study["what"] == {
        "type": "ImagingStudy",
        "identifier": {"system": "urn:dicom:uid", "value": "urn:oid:1.2.840.1"},
    }
    hashed = audit.write_event("C", "dcm-abc", "p1", AT)["entity"][1]
    assert hashed["what"] == {"type": "ImagingStudy", "display": "ImagingStudy/dcm-abc"}


def test_a_retrieval_summary_carries_its_period_count_and_pacs():
    first = AT - timedelta(seconds=42)
    event = audit.retrieval_event(
        CLINICIAN, "p1", "1.2.3", "main", 200, 7, first, AT, "wado", event_id="audit-fixed"
    )
    assert event["id"] == "audit-fixed"
    assert event["period"] == {"start": "2026-03-01T11:59:18.000Z", "end": event["recorded"]}
    detail = {d["type"]: d["valueString"] for d in event["entity"][1]["detail"]}
    assert detail == {"pacs": "main", "kind": "WADO-RS", "requests": "7"}


def test_retrieval_ids_are_deterministic_per_token_study_pacs_outcome_and_window():
    base = audit.retrieval_id("k", "1.2.3", "main", 200, 1000.0)
    assert base == audit.retrieval_id("k", "1.2.3", "main", 200, 1000.0)
    others = {
        audit.retrieval_id("k2", "1.2.3", "main", 200, 1000.0),
        audit.retrieval_id("k", "1.2.4", "main", 200, 1000.0),
        audit.retrieval_id("k", "1.2.3", "second", 200, 1000.0),
        audit.retrieval_id("k", "1.2.3", "main", 404, 1000.0),
        audit.retrieval_id("k", "1.2.3", "main", 200, 1060.0),
        audit.retrieval_id("k", "1.2.3", "main", 200, 1000.0, "qido"),
    }
    assert base not in others and len(others) == 6 and len(base) <= 64


def test_dereferenced_keeps_references_as_text():
    event = audit.fetch_event(CLINICIAN, "p1", [], 200, [], AT)
    users_only = audit.dereferenced(event, ("agent",))
    assert users_only["entity"][0]["what"] == {"reference": "Patient/p1"}
    assert users_only["agent"][0]["who"]["display"] == "Practitioner/pr1"
    flat = audit.dereferenced(event)
    assert "reference" not in json.dumps(flat)
    assert flat["entity"][0]["what"] == {"display": "Patient/p1"}
    assert flat["agent"][0]["who"]["display"] == "Practitioner/pr1"
    assert event["entity"][0]["what"] == {"reference": "Patient/p1"}  # the original unchanged


def test_ids_are_unique_and_times_need_a_zone():
    assert len({audit.write_event("C", "1.2", "p", AT)["id"] for _ in range(50)}) == 50
    with pytest.raises(ValueError):
        audit.instant(datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        audit.write_event("R", "1.2", "p", AT)
