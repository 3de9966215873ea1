"""The fetch use case on the real PACS adapter and a loose fake PACS server, with an
in-memory FHIR store: write decisions, isolation and status rules.

The fake PACS (tests/unit/fake_dicomweb.py) returns every study it holds for any query, so
every isolation result below is the sidecar's own doing.
"""

from __future__ import annotations

import copy
import re

import pytest

from sidecar.fetch_imaging import FetchImaging, FetchRequest
from sidecar.mapping import Detail, imaging_study_id
from sidecar.outcome import AmbiguousPatient, FhirConflict, NotMappable, PatientNotFound
from sidecar.pacs import PacsClient
from sidecar.settings import load_settings
from tests.unit.fake_dicomweb import FakeDicomWeb, study_row

SYS_A = "urn:example:mrn:hosp-a"


def study_record(pid, uid, issuer="HOSP-A", date="20200101"):
    return study_row(pid, uid, issuer, date=date)


class LoosePacs:
    """The fake server's studies by UID (what the PACS holds), for the tests to edit."""

    def __init__(self, server: FakeDicomWeb, studies: dict) -> None:
        self.server = server
        self.studies = studies
        self._sync()

    def _sync(self) -> None:
        self.server.studies = list(self.studies.values())

    def __setitem__(self, uid, record) -> None:
        self.studies[uid] = record
        self._sync()

    def __delitem__(self, uid) -> None:
        del self.studies[uid]
        self._sync()

    @property
    def patient_queries(self) -> list[str]:
        return [
            m[1] for q in self.server.query_strings() if (m := re.match(r"00100020=([^&]*)", q))
        ]


class FakeFhir:
    def __init__(self):
        self.store = {}  # (type, id) -> resource
        self.transactions = []
        self.conflicts = 0  # how many transactions fail with a version conflict first

    def read_patient(self, pid):
        if ("Patient", pid) not in self.store:
            raise PatientNotFound(pid)
        return self.store[("Patient", pid)]

    def find_patients(self, token, limit=2):
        parts = re.split(r"(?<!\\)\|", token, maxsplit=1)
        system, value = (parts[0] or None, parts[1]) if len(parts) == 2 else (None, parts[0])
        value = re.sub(r"\\(.)", r"\1", value)
        return [
            r
            for (t, _), r in self.store.items()
            if t == "Patient"
            and any(
                i.get("value") == value and (system is None or i.get("system") == system)
                for i in r.get("identifier", [])
            )
        ]

    def studies_of(self, pid):
        return {
            i: copy.deepcopy(r)
            for (t, i), r in self.store.items()
            if t == "ImagingStudy" and r["subject"]["reference"] == f"Patient/{pid}"
        }

    def read_many(self, rtype, ids):
        return {i: copy.deepcopy(self.store[(rtype, i)]) for i in ids if (rtype, i) in self.store}

    def transaction(self, entries):
        if self.conflicts:
            self.conflicts -= 1
            raise FhirConflict("a concurrent writer won (412)")
        self.transactions.append(entries)
        out = []
        for e in entries:
            key = tuple(e["request"]["url"].split("/"))
            old = self.store.get(key)
            version = int(old["meta"]["versionId"]) + 1 if old else 1
            self.store[key] = {**copy.deepcopy(e["resource"]), "meta": {"versionId": str(version)}}
            out.append({"response": {"status": "200", "etag": f'W/"{version}"'}})
        return out

    def close(self):
        pass


@pytest.fixture
def world(httpserver):
    server = FakeDicomWeb(httpserver).install()
    settings = load_settings(
        {
            "SIDECAR_PATIENT_IDENTIFIERS": f"{SYS_A}|HOSP-A",
            "SIDECAR_PACS_MAIN_URL": server.url,
            "SIDECAR_PACS_RETRIES": "0",
        }
    )
    pacs = LoosePacs(
        server,
        {
            "1.2.1": study_record("12", "1.2.1"),
            "1.2.2": study_record("12", "1.2.2", date="20210101"),
            "1.2.3": study_record("123", "1.2.3"),
            "1.2.4": study_record("12", "1.2.4", issuer="HOSP-B"),
            "1.2.5": study_record("x12", "1.2.5"),
        },
    )
    fhir = FakeFhir()
    for pid, value in (("p12", "12"), ("p123", "123"), ("pstar", "12*")):
        fhir.store[("Patient", pid)] = {
            "resourceType": "Patient",
            "id": pid,
            "identifier": [{"system": SYS_A, "value": value}],
        }
    client = PacsClient(settings.pacs["main"], settings.qido)
    yield FetchImaging(settings, fhir, {"main": client}), fhir, pacs
    client.close()


def versions(fhir):
    return {k: v["meta"]["versionId"] for k, v in fhir.store.items() if k[0] != "Patient"}


def test_first_fetch_writes_studies_and_endpoint_in_one_transaction(world):
    fetch, fhir, _ = world
    result = fetch(FetchRequest(patient_id="p12", detail=Detail.STUDY))
    assert [s["id"] for s in result.studies] == ["1.2.2", "1.2.1"]  # newest first
    assert result.created == 2 and len(fhir.transactions) == 1
    assert {e["request"]["url"] for e in fhir.transactions[0]} == {
        "Endpoint/dicomweb-main",
        "ImagingStudy/1.2.1",
        "ImagingStudy/1.2.2",
    }
    assert all(s["subject"] == {"reference": "Patient/p12"} for s in result.studies)
    bundle = result.bundle("http://fhir/base")
    assert bundle["type"] == "searchset" and bundle["total"] == 2
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes[:3] == ["match", "match", "include"]


def test_repeated_fetch_rewrites_nothing(world):
    fetch, fhir, _ = world
    fetch(FetchRequest(patient_id="p12"))
    before = versions(fhir)
    again = fetch(FetchRequest(patient_id="p12"))
    assert len(fhir.transactions) == 1 and versions(fhir) == before
    assert again.unchanged == 2 and again.created == again.updated == 0
    assert all(s["meta"]["versionId"] == "1" for s in again.studies)


def test_persist_false_writes_nothing(world):
    fetch, fhir, _ = world
    result = fetch(FetchRequest(patient_id="p12", persist=False))
    assert len(result.studies) == 2 and not fhir.transactions


def test_isolation_a_loose_pacs_gives_each_patient_only_its_own_studies(world):
    fetch, fhir, pacs = world
    result = fetch(FetchRequest(patient_id="p123"))
    assert [s["id"] for s in result.studies] == ["1.2.3"]
    result = fetch(FetchRequest(patient_id="p12"))
    assert sorted(s["id"] for s in result.studies) == ["1.2.1", "1.2.2"]  # not B's, not x12
    assert pacs.patient_queries == ["123", "12"]
    stored = {
        k[1]: v["subject"]["reference"] for k, v in fhir.store.items() if k[0] == "ImagingStudy"
    }
    assert stored == {"1.2.3": "Patient/p123", "1.2.1": "Patient/p12", "1.2.2": "Patient/p12"}


def test_wildcard_identifier_is_refused_with_422(world):
    fetch, fhir, pacs = world
    with pytest.raises(NotMappable) as err:
        fetch(FetchRequest(patient_id="pstar"))
    assert err.value.status == 422 and "'*'" in err.value.diagnostics
    assert not pacs.patient_queries and not fhir.transactions


def test_unknown_and_ambiguous_patients(world):
    fetch, fhir, _ = world
    with pytest.raises(PatientNotFound):
        fetch(FetchRequest(patient_id="nobody"))
    with pytest.raises(PatientNotFound):
        fetch(FetchRequest(identifier=(SYS_A, "999")))
    fhir.store[("Patient", "dup")] = {**fhir.store[("Patient", "p12")], "id": "dup"}
    with pytest.raises(AmbiguousPatient):
        fetch(FetchRequest(identifier=(SYS_A, "12")))


def test_unmapped_identifier_system_is_422(world):
    fetch, fhir, _ = world
    fhir.store[("Patient", "other")] = {
        "resourceType": "Patient",
        "id": "other",
        "identifier": [{"system": "urn:unmapped", "value": "12"}],
    }
    with pytest.raises(NotMappable):
        fetch(FetchRequest(patient_id="other"))


def test_refiled_study_moves_and_leaves_old_patient_entered_in_error(world):
    fetch, fhir, pacs = world
    fetch(FetchRequest(patient_id="p12"))
    pacs["1.2.1"] = study_record("123", "1.2.1")  # PACS re-files it under 123
    result = fetch(FetchRequest(patient_id="p12"))
    assert [s["id"] for s in result.studies] == ["1.2.2"]
    assert [w["status"] for w in result.withdrawn] == ["entered-in-error"]
    assert fhir.store[("ImagingStudy", "1.2.1")]["subject"] == {"reference": "Patient/p12"}
    # fetching the new owner moves the same resource (no duplicate) and makes it available
    moved = fetch(FetchRequest(patient_id="p123"))
    assert {s["id"] for s in moved.studies} == {"1.2.1", "1.2.3"}
    stored = fhir.store[("ImagingStudy", "1.2.1")]
    assert stored["subject"] == {"reference": "Patient/p123"} and stored["status"] == "available"


def test_study_gone_from_pacs_becomes_unknown_and_filtered_fetch_touches_nothing(world):
    fetch, fhir, pacs = world
    fetch(FetchRequest(patient_id="p12"))
    del pacs["1.2.1"]
    filtered = fetch(FetchRequest(patient_id="p12", modalities=frozenset({"CT"})))
    assert not filtered.withdrawn
    result = fetch(FetchRequest(patient_id="p12"))
    assert [w["status"] for w in result.withdrawn] == ["unknown"]
    assert fhir.store[("ImagingStudy", "1.2.1")]["status"] == "unknown"
    assert any("no longer" in i["diagnostics"] for i in result.issues)


def test_foreign_studies_are_not_judged(world):
    fetch, fhir, _ = world
    fhir.store[("ImagingStudy", "foreign")] = {
        "resourceType": "ImagingStudy",
        "id": "foreign",
        "status": "available",
        "subject": {"reference": "Patient/p12"},
        "meta": {"versionId": "1"},
    }
    result = fetch(FetchRequest(patient_id="p12"))
    assert not result.withdrawn and fhir.store[("ImagingStudy", "foreign")]["status"] == "available"


def test_mappable_identifiers_for_the_worker(world):
    fetch, fhir, _ = world
    patient = {
        "resourceType": "Patient",
        "identifier": [
            {"system": SYS_A, "value": "12"},
            {"system": SYS_A, "value": "77", "use": "old"},
            {"system": "urn:other", "value": "x"},
            {"system": SYS_A, "value": "1?"},
        ],
    }
    keys = fetch.mappable_identifiers(patient)
    assert [(k.pacs, k.patient_id, k.issuer) for k in keys] == [("main", "12", "HOSP-A")]
    assert len(fetch.refused_identifiers(patient)) == 1
    assert imaging_study_id("1.2.1") == "1.2.1"


def test_a_version_conflict_is_re_read_and_retried(world):
    fetch, fhir, _ = world
    fhir.conflicts = 2
    result = fetch(FetchRequest(patient_id="p12"))
    assert result.created == 2 and len(fhir.transactions) == 1


def test_conflicts_that_keep_coming_are_409_and_nothing_is_written(world):
    fetch, fhir, _ = world
    fhir.conflicts = 3
    with pytest.raises(FhirConflict) as err:
        fetch(FetchRequest(patient_id="p12"))
    assert err.value.status == 409 and not fhir.transactions
