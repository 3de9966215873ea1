"""The pure rules of convert's Bundle: which Patients a transaction creates (and on what
condition), which it leaves out, and where the OperationOutcome goes."""

from __future__ import annotations

from sidecar.core import convert_bundle as cb
from sidecar.settings import IdentifierMapping

A = IdentifierMapping("urn:example:a", "HOSP-A")
PLAIN = IdentifierMapping("urn:example:plain", None)


def patient(patient_id: str, issuer: str | None = None) -> dict:
    """A Patient as build_patient makes it from the headers."""
    identifier: dict = {"value": patient_id}
    if issuer and ":" in issuer:
        identifier["system"] = issuer
    elif issuer:
        identifier["assigner"] = {"display": issuer}
    return {"resourceType": "Patient", "identifier": [identifier]}


def test_an_issuer_that_is_a_uri_is_its_own_system_without_a_mapping():
    key = ("P-1", "urn:oid:1.2.3")
    plan = cb.plan_patients({key: patient(*key)}, {"1.9": key}, cb.TRANSACTION)
    (entry,) = plan.entries
    assert entry["request"]["ifNoneExist"] == "identifier=urn:oid:1.2.3|P-1"
    assert plan.subjects == {"1.9": {"reference": entry["fullUrl"]}} and not plan.left_out


def test_the_mapping_gives_the_system_and_the_only_identifier():
    key = ("P-1", "HOSP-A")
    plan = cb.plan_patients({key: patient(*key)}, {"1.9": key}, cb.TRANSACTION, [A])
    (entry,) = plan.entries
    assert entry["resource"]["identifier"] == [{"system": "urn:example:a", "value": "P-1"}]
    assert entry["request"] == {
        "method": "POST",
        "url": "Patient",
        "ifNoneExist": "identifier=urn:example:a|P-1",
    }


def test_search_characters_in_a_patient_id_are_escaped_in_the_condition():
    key = ("P|1,2", None)
    plan = cb.plan_patients({key: patient("P|1,2")}, {"1.9": key}, cb.TRANSACTION, [PLAIN])
    assert plan.entries[0]["request"]["ifNoneExist"] == r"identifier=urn:example:plain|P\|1\,2"


def test_two_keys_one_identifier_are_one_patient_entry():
    # a mapping without issuer and none with one: PatientIDs are unique across issuers
    one, two = ("P-1", "HOSP-A"), ("P-1", "HOSP-B")
    plan = cb.plan_patients(
        {one: patient(*one), two: patient(*two)},
        {"1.8": one, "1.9": two},
        cb.TRANSACTION,
        [PLAIN],
    )
    (entry,) = plan.entries  # twice the same conditional create would be a server error
    assert plan.subjects == {uid: {"reference": entry["fullUrl"]} for uid in ("1.8", "1.9")}


def test_a_transaction_leaves_out_what_it_cannot_identify_a_collection_keeps_it():
    no_id, plain = (None, "1.7"), ("P-2", "HOSP-B")
    patients = {no_id: {"resourceType": "Patient"}, plain: patient(*plain)}
    studies = {"1.7": no_id, "1.8": plain, "1.9": plain}
    plan = cb.plan_patients(patients, studies, cb.TRANSACTION, [A])
    assert not plan.entries and not plan.subjects
    assert plan.left_out_studies == {"1.7", "1.8", "1.9"}
    whys = {item.study_uids: item.why for item in plan.left_out}
    assert "no PatientID (0010,0020)" in whys[("1.7",)]
    assert "'HOSP-B' is no URI or OID" in whys[("1.8", "1.9")]
    assert "'urn:example:a|HOSP-A'" in whys[("1.8", "1.9")]  # the mappings it had
    line = plan.left_out[1].line({"1.8": "/data/x.dcm"})
    assert line.startswith("studies 1.8, 1.9 (first file: /data/x.dcm): their patient's ")
    assert "P-2" not in line

    collection = cb.plan_patients(patients, studies, cb.COLLECTION, [A])
    assert len(collection.entries) == 2 and not collection.left_out
    assert all("request" not in e for e in collection.entries)


def test_the_outcome_is_an_entry_of_a_collection_never_of_a_transaction():
    skipped = [
        cb.SkippedFile("/in/b.dcm", cb.TRUNCATED, "cut"),
        cb.SkippedFile("/in/a", "not DICOM", "x"),
    ]
    outcome = cb.conversion_outcome(skipped, [], [], {})
    assert outcome is not None
    assert [i["diagnostics"] for i in outcome["issue"]] == [
        "file skipped: /in/a: not DICOM: x",
        "file skipped: /in/b.dcm: truncated: cut",
    ]
    assert [i["severity"] for i in outcome["issue"]] == ["information", "error"]
    collection = cb.build_bundle([], [], cb.COLLECTION, outcome)
    assert [e["resource"]["resourceType"] for e in collection["entry"]] == ["OperationOutcome"]
    assert cb.build_bundle([], [], cb.TRANSACTION, outcome)["entry"] == []
    assert cb.conversion_outcome([], [], [], {}) is None
