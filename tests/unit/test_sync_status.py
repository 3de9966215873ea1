"""The operator's lookup (sidecar/usecases/sync_status.py) on the real PACS adapter, a loose
fake PACS server, the in-memory FHIR store of the fetch tests and a ledger stand-in: every
study's state comes from what each side really holds, written by the real fetch."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from sidecar.adapters.dicomweb import DicomwebPacs
from sidecar.core import sync_explanation as sx
from sidecar.core.fetch_request import FetchRequest
from sidecar.core.outcome import BadRequest, PatientNotFound
from sidecar.core.sync_state import PatientSyncState
from sidecar.settings import load_settings
from sidecar.usecases.fetch_imaging import FetchImaging
from sidecar.usecases.sync_status import SyncStatus
from tests.unit.fake_dicomweb import FakeDicomWeb, element, study_row
from tests.unit.test_fetch_use_case import SYS_A, FakeFhir

MRN = "MRN-SECRET-77"  # an identifier value: it must never appear in an answer


class FhirWithRead(FakeFhir):
    def read(self, resource_type, resource_id):
        return self.store.get((resource_type, resource_id))


class Ledger:
    """The queue's ``state(id)`` (the one SyncQueue method the lookup calls)."""

    def __init__(self):
        self.states = {}

    def state(self, patient_id):
        return self.states.get(patient_id)


def row(pid, uid, series=1, instances=3):
    return study_row(
        pid,
        uid,
        "HOSP-A",
        **{"00201206": element("IS", series), "00201208": element("IS", instances)},
    )


def add_patient(fhir, pid, value=MRN):
    fhir.store[("Patient", pid)] = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": SYS_A, "value": value}],
    }


@dataclass
class World:
    lookup: SyncStatus
    fetch: FetchImaging
    fhir: FhirWithRead
    ledger: Ledger
    pacs: FakeDicomWeb


@pytest.fixture
def world(httpserver):
    server = FakeDicomWeb(httpserver).install()
    server.studies = [row(MRN, "1.2.1"), row(MRN, "1.2.2", 2, 5), row("OTHER-1", "1.2.9")]
    settings = load_settings(
        {
            "SIDECAR_PATIENT_IDENTIFIERS": f"{SYS_A}|HOSP-A",
            "SIDECAR_PACS_MAIN_URL": server.url,
            "SIDECAR_PACS_RETRIES": "0",
        }
    )
    fhir, ledger = FhirWithRead(), Ledger()
    add_patient(fhir, "p1")
    client = DicomwebPacs(settings.pacs["main"], settings.qido)
    fetch = FetchImaging(settings, fhir, {"main": client})
    lookup = SyncStatus(settings, fhir, {"main": client}, ledger, clock=lambda: 1000.0)
    yield World(lookup, fetch, fhir, ledger, server)
    fetch.close()


def states(report) -> dict[str, str]:
    return {r.facts.uid: r.explanation.state for r in report.studies}


def test_before_any_sync_both_studies_are_in_the_pacs_only(world):
    lookup = world.lookup
    report = lookup.of_patient("p1")
    assert states(report) == {"1.2.1": sx.NOT_SYNCED, "1.2.2": sx.NOT_SYNCED}
    assert report.pacs_patients == (("main", SYS_A),)


def test_after_the_fetch_they_are_up_to_date_with_both_sides_counts(world):
    lookup = world.lookup
    world.fetch(FetchRequest(patient_id="p1"))
    report = lookup.of_patient("p1")
    assert set(states(report).values()) == {sx.UP_TO_DATE}
    data = report.to_json()
    study = next(s for s in data["studies"] if s["studyInstanceUid"] == "1.2.2")
    assert study["pacs"] == [{"pacs": "main", "series": 2, "instances": 5}]
    assert study["fhir"]["subject"] == "Patient/p1"


def test_a_second_patient_with_the_same_mrn_explains_the_missing_studies(world):
    lookup = world.lookup
    add_patient(world.fhir, "p2")
    report = lookup.of_patient("p1")
    assert set(states(report).values()) == {sx.IDENTITY_CONFLICT}
    assert report.conflicts == {"p2": ("main",)}
    assert "Patient/p1 and Patient/p2" in report.studies[0].explanation.text
    by_study = lookup.of_study("1.2.1")
    assert by_study.explanation.state == sx.IDENTITY_CONFLICT
    assert by_study.holders == ("p1", "p2")


def test_a_dead_letter_explains_the_missing_studies_with_its_error(world):
    lookup = world.lookup
    world.ledger.states["p1"] = PatientSyncState(
        "p1", wanted=1, dead=True, dead_at=900.0, attempts=1, last_error="HTTP 502: PACS down"
    )
    report = lookup.of_patient("p1")
    assert set(states(report).values()) == {sx.SYNC_FAILED}
    assert report.sync.state == "dead" and report.to_json()["sync"]["lastError"].endswith("down")


def test_a_study_the_pacs_no_longer_has_is_to_be_withdrawn(world):
    world.fetch(FetchRequest(patient_id="p1"))
    world.pacs.studies = [r for r in world.pacs.studies if "1.2.2" not in json.dumps(r)]
    assert states(world.lookup.of_patient("p1"))["1.2.2"] == sx.TO_WITHDRAW


def test_a_pacs_that_does_not_answer_is_named_and_fhir_is_still_shown(world):
    lookup = world.lookup
    world.fetch(FetchRequest(patient_id="p1"))
    world.pacs.status = 503
    report = lookup.of_patient("p1")
    assert set(report.unreachable) == {"main"}
    assert set(states(report).values()) == {sx.PACS_UNREACHABLE}


def test_a_study_lookup_after_the_fetch(world):
    lookup = world.lookup
    world.fetch(FetchRequest(patient_id="p1"))
    report = lookup.of_study("1.2.2")
    assert report.explanation.state == sx.UP_TO_DATE
    assert report.patient_id == "p1" and report.holders == ("p1",)
    assert report.stored.series == 2


def test_a_study_nobody_holds_and_one_nobody_has(world):
    lookup = world.lookup
    assert lookup.of_study("1.2.9").explanation.state == sx.NO_PATIENT
    assert lookup.of_study("1.2.404").explanation.state == sx.NOT_FOUND
    with pytest.raises(BadRequest):
        lookup.of_study("1.2.x")
    with pytest.raises(PatientNotFound):
        lookup.of_patient("nobody")


def test_no_answer_carries_the_identifier_value(world):
    lookup = world.lookup
    world.fetch(FetchRequest(patient_id="p1"))
    add_patient(world.fhir, "p2")
    answers = [
        lookup.of_patient("p1").to_json(),
        lookup.of_patient("p1").to_parameters(),
        lookup.of_study("1.2.1").to_json(),
    ]
    assert MRN not in json.dumps(answers)
