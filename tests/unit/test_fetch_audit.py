"""The use case's part of the audit: an event per ImagingStudy written, and the caller's
right to read the Patient checked with the caller's own token before any PACS query."""

from __future__ import annotations

import pytest

from sidecar.core.caller import Caller
from sidecar.core.fetch_request import FetchRequest
from sidecar.core.outcome import AmbiguousPatient, PatientNotFound, PatientNotVisible
from tests.unit.test_audit_trail import ListSink
from tests.unit.test_fetch_use_case import SYS_A, world  # noqa: F401 - fixture

CALLER = Caller("caller-token", "https://auth", "u1", "viewer", frozenset(), 0, "p12")


@pytest.fixture
def audited(world):  # noqa: F811 - the fixture imported above
    fetch, fhir, pacs = world
    fetch.audit = sink = ListSink()
    fhir.visible = {"p12", "p123"}  # what the callers' tokens may read
    fhir.read_as = lambda token, rtype, rid: (
        fhir.store.get((rtype, rid)) if token == "caller-token" and rid in fhir.visible else None
    )
    return fetch, fhir, pacs, sink


def actions(sink) -> list[tuple[str, str]]:
    return sorted((e["action"], e["entity"][1]["name"]) for e in sink.events)


def test_each_study_written_is_one_event_created_then_updated(audited):
    fetch, fhir, pacs, sink = audited
    fetch(FetchRequest(patient_id="p12"))
    assert actions(sink) == [("C", "ImagingStudy/1.2.1"), ("C", "ImagingStudy/1.2.2")]
    assert all(e["entity"][0]["what"] == {"reference": "Patient/p12"} for e in sink.events)
    sink.events.clear()
    fetch(FetchRequest(patient_id="p12"))
    assert sink.events == []  # nothing written, nothing recorded
    del pacs["1.2.2"]  # gone from the PACS: withdrawn (status unknown) is an update
    fetch(FetchRequest(patient_id="p12"))
    assert actions(sink) == [("U", "ImagingStudy/1.2.2")]


def test_the_author_is_the_caller_or_the_sidecar(audited):
    fetch, _, _, sink = audited
    fetch(FetchRequest(patient_id="p12", caller=CALLER))
    authors = {a["who"].get("identifier", {}).get("value") for e in sink.events for a in e["agent"]}
    assert "u1" in authors and "viewer" in authors
    sink.events.clear()
    fetch(FetchRequest(patient_id="p123"))
    author = sink.events[0]["agent"][0]
    assert author["requestor"] and author["who"]["display"] == "dicom-fhir-sidecar"


def test_persist_false_records_no_write(audited):
    fetch, _, _, sink = audited
    fetch(FetchRequest(patient_id="p12", persist=False))
    assert sink.events == []


@pytest.mark.parametrize(
    "request_",
    [
        FetchRequest(identifier=(SYS_A, "12"), caller=CALLER),
        FetchRequest(patient_id="p12", caller=CALLER),
    ],
)
def test_a_patient_the_caller_may_not_read_is_not_found_and_the_pacs_is_not_asked(
    audited, request_
):
    fetch, fhir, pacs, sink = audited
    fhir.visible = {"p123"}
    with pytest.raises(PatientNotVisible) as refused:
        fetch(request_)
    assert refused.value.patient_id == "p12" and refused.value.status == 404
    expected = (
        "no Patient has the given identifier" if request_.identifier else "Patient/p12 is not known"
    )
    assert refused.value.diagnostics == expected
    assert pacs.patient_queries == [] and not fhir.transactions and sink.events == []


def test_a_missing_patient_is_plainly_not_found_and_an_allowed_one_is_fetched(audited):
    fetch, fhir, _, _ = audited
    with pytest.raises(PatientNotFound) as missing:
        fetch(FetchRequest(identifier=(SYS_A, "999"), caller=CALLER))
    assert not isinstance(missing.value, PatientNotVisible)
    result = fetch(FetchRequest(identifier=(SYS_A, "12"), caller=CALLER))
    assert len(result.studies) == 2


def test_an_identifier_several_unreadable_patients_share_is_not_found_for_the_caller(audited):
    """A patient token at type level, with someone else's identifier that two Patients
    carry: a 409 naming both Patients told the caller that the identifier exists (and
    whose records hold it), where a single holder is a 404. Neither is the caller's to know."""
    fetch, fhir, pacs, _ = audited
    fhir.store[("Patient", "dup")] = {**fhir.store[("Patient", "p12")], "id": "dup"}
    fhir.visible = {"p123"}
    with pytest.raises(PatientNotVisible) as refused:
        fetch(FetchRequest(identifier=(SYS_A, "12"), caller=CALLER))
    assert refused.value.status == 404
    assert refused.value.diagnostics == "no Patient has the given identifier"
    assert pacs.patient_queries == []
    # one of them the caller's: still a conflict, naming only what the caller may read
    fhir.visible = {"p12"}
    with pytest.raises(AmbiguousPatient) as conflict:
        fetch(FetchRequest(identifier=(SYS_A, "12"), caller=CALLER))
    assert "Patient/p12" in conflict.value.diagnostics
    assert "Patient/dup" not in conflict.value.diagnostics
    # the sidecar's own callers (no user token) still see both
    with pytest.raises(AmbiguousPatient, match="Patient/dup"):
        fetch(FetchRequest(identifier=(SYS_A, "12")))
