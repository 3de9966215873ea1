"""Payload validation, the relevance fingerprint and the deleted/merged/inactive rule."""

from __future__ import annotations

import json

import pytest

from sidecar.core.notification_rules import (
    InvalidNotification,
    parse_patient_payload,
    patient_id_of_reference,
    relevant_fingerprint,
    rule_for,
)

FHIR = "application/fhir+json"


def patient(**extra):
    return {"resourceType": "Patient", "id": "p1", **extra}


def body(resource) -> bytes:
    return json.dumps(resource).encode()


def test_a_valid_patient_payload_is_returned():
    resource = patient(identifier=[{"system": "s", "value": "1"}])
    assert parse_patient_payload("p1", body(resource), FHIR + "; charset=UTF-8") == resource


@pytest.mark.parametrize(
    ("patient_id", "payload", "content_type", "status"),
    [
        ("p1", body(patient()), "text/plain", 415),
        ("p1", body(patient()), None, 415),
        ("p1", b"", FHIR, 400),
        ("p1", b"{not json", FHIR, 400),
        ("p1", b"[]", FHIR, 400),
        ("p1", body({"resourceType": "Observation", "id": "p1"}), FHIR, 400),
        ("p1", body(patient(id="other")), FHIR, 400),
        ("bad id!", body(patient()), FHIR, 400),
        ("x" * 65, body(patient()), FHIR, 400),
        ("p1", body(patient(identifier={"value": "1"})), FHIR, 400),
        ("p1", body(patient(active="yes")), FHIR, 400),
        ("p1", b" " * 1_000_001, FHIR, 413),
    ],
)
def test_invalid_payloads_are_refused_with_the_right_status(
    patient_id, payload, content_type, status
):
    with pytest.raises(InvalidNotification) as info:
        parse_patient_payload(patient_id, payload, content_type)
    assert info.value.status == status


def test_a_payload_without_id_is_accepted_for_the_url_id():
    resource = {"resourceType": "Patient"}
    assert parse_patient_payload("p1", body(resource), "application/json") == resource


BASE = patient(
    identifier=[{"system": "s", "value": "1"}, {"system": "t", "value": "2"}],
    telecom=[{"system": "phone", "value": "1"}],
)


@pytest.mark.parametrize(
    "change",
    [
        {"telecom": [{"system": "phone", "value": "999"}]},
        {"name": [{"family": "Other"}]},
        {"address": [{"city": "Bern"}]},
        {"meta": {"versionId": "7"}},
        {"identifier": [{"system": "t", "value": "2"}, {"system": "s", "value": "1"}]},
        {"active": True},
    ],
)
def test_changes_that_do_not_affect_imaging_keep_the_fingerprint(change):
    assert relevant_fingerprint({**BASE, **change}) == relevant_fingerprint(BASE)


@pytest.mark.parametrize(
    "change",
    [
        {"identifier": [{"system": "s", "value": "3"}]},
        {"identifier": []},
        {"active": False},
        {"link": [{"type": "replaced-by", "other": {"reference": "Patient/p2"}}]},
    ],
)
def test_changes_that_affect_imaging_change_the_fingerprint(change):
    assert relevant_fingerprint({**BASE, **change}) != relevant_fingerprint(BASE)


def test_the_fingerprint_uses_the_use_cases_keys_when_given():
    keys = [("main", "s", "1", None)]
    other = {**BASE, "identifier": [{"system": "s", "value": "1"}, {"system": "u", "value": "9"}]}
    # an unmapped identifier changed: same PACS queries, same fingerprint
    assert relevant_fingerprint(BASE, keys) == relevant_fingerprint(other, keys)
    assert relevant_fingerprint(BASE, keys) != relevant_fingerprint(
        BASE, [("main", "s", "2", None)]
    )


@pytest.mark.parametrize(
    ("resource", "kind", "survivor"),
    [
        (patient(), "sync", None),
        (patient(active=True), "sync", None),
        (patient(active=False), "inactive", None),
        (
            patient(link=[{"type": "replaced-by", "other": {"reference": "Patient/p2"}}]),
            "merged",
            "p2",
        ),
        (
            patient(
                active=False, link=[{"type": "replaced-by", "other": {"reference": "Patient/p2"}}]
            ),
            "merged",
            "p2",
        ),
        (patient(link=[{"type": "replaces", "other": {"reference": "Patient/p0"}}]), "sync", None),
        (patient(link=[{"type": "seealso", "other": {"reference": "Patient/p3"}}]), "sync", None),
        (
            patient(link=[{"type": "replaced-by", "other": {"reference": "Patient/p1"}}]),
            "sync",
            None,
        ),
        (
            patient(link=[{"type": "replaced-by", "other": {"reference": "RelatedPerson/r"}}]),
            "sync",
            None,
        ),
    ],
)
def test_rule_for(resource, kind, survivor):
    rule = rule_for(resource)
    assert (rule.kind, rule.survivor_id) == (kind, survivor)
    assert rule.fetches_imaging == (kind == "sync")


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Patient/123", "123"),
        ("http://h/fhir/Patient/a-b.c/_history/3", "a-b.c"),
        ("Observation/1", None),
        ("Patient/", None),
        (None, None),
    ],
)
def test_patient_id_of_reference(reference, expected):
    assert patient_id_of_reference(reference) == expected
