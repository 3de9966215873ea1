"""The fetch use case on the real PACS adapter and a loose fake PACS server, with an
in-memory FHIR store: write decisions, isolation and status rules.

The fake PACS (tests/unit/fake_dicomweb.py) returns every study it holds for any query, so
every isolation result below is the sidecar's own doing.
"""

from __future__ import annotations

import copy
import re

import pytest

from sidecar.adapters.dicomweb import DicomwebPacs
from sidecar.core.fetch_request import FetchRequest
from sidecar.core.mapping import Detail, imaging_study_id
from sidecar.core.outcome import (
    AmbiguousPatient,
    DuplicatePatient,
    FhirConflict,
    NotMappable,
    PatientNotFound,
)
from sidecar.settings import load_settings
from sidecar.usecases.fetch_imaging import FetchImaging
from tests.unit.fake_dicomweb import FakeDicomWeb, study_row

SYS_A = "urn:example:mrn:hosp-a"
SYS_A_NEW = "urn:example:mrn:hosp-a-new"  # a second system for the same issuer
SYS_PLAIN = "urn:example:mrn:no-issuer"  # PatientID alone: studies under any issuer


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


def loose(value: str) -> str:
    return re.sub(r"[\x00-\x1f]", "", value).strip()


class FakeFhir:
    def __init__(self):
        self.store = {}  # (type, id) -> resource
        self.transactions = []
        self.conflicts = 0  # how many transactions fail with a version conflict first

    def read_patient(self, pid):
        if ("Patient", pid) not in self.store:
            raise PatientNotFound(pid)
        return self.store[("Patient", pid)]

    def search(self, resource_type, params, limit):
        assert resource_type == "Patient" and set(params) == {"identifier", "_elements"}
        found = {}
        for token in re.split(r"(?<!\\),", params["identifier"]):
            for patient in self.find_patients(token.strip()):
                found[patient["id"]] = patient
        return list(found.values())[:limit]

    def find_patients(self, token, limit=2):
        """As loose as HAPI: values compared trimmed and without control characters."""
        parts = re.split(r"(?<!\\)\|", token, maxsplit=1)
        system, value = (parts[0] or None, parts[1]) if len(parts) == 2 else (None, parts[0])
        value = loose(re.sub(r"\\(.)", r"\1", value))
        return [
            r
            for (t, _), r in self.store.items()
            if t == "Patient"
            and any(
                loose(i.get("value", "")) == value and (system is None or i.get("system") == system)
                for i in r.get("identifier", [])
            )
        ][:limit]

    def studies_of(self, pid):
        return {
            i: copy.deepcopy(r)
            for (t, i), r in self.store.items()
            if t == "ImagingStudy" and r["subject"]["reference"] == f"Patient/{pid}"
        }

    def studies_and_endpoints_of(self, pid):
        studies = self.studies_of(pid)
        refs = {e["reference"] for s in studies.values() for e in s.get("endpoint") or []}
        endpoints = {
            i: copy.deepcopy(r)
            for (t, i), r in self.store.items()
            if t == "Endpoint" and f"Endpoint/{i}" in refs
        }
        return studies, endpoints

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
            "SIDECAR_PATIENT_IDENTIFIERS": f"{SYS_A}|HOSP-A,{SYS_A_NEW}|HOSP-A,{SYS_PLAIN}",
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
    client = DicomwebPacs(settings.pacs["main"], settings.qido)
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


def add_patient(fhir, pid, value, **extra):
    fhir.store[("Patient", pid)] = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": SYS_A, "value": value}],
        **extra,
    }


@pytest.mark.parametrize("twin_value", ["12", "12 ", " 12"])
def test_a_second_patient_with_the_same_mrn_is_a_conflict_for_both(world, twin_value):
    fetch, fhir, _ = world
    fetch(FetchRequest(patient_id="p12"))
    before = versions(fhir)
    add_patient(fhir, "twin", twin_value)
    for pid in ("twin", "p12"):
        with pytest.raises(DuplicatePatient) as err:
            fetch(FetchRequest(patient_id=pid))
        assert err.value.status == 409
        assert "Patient/p12" in err.value.diagnostics and "Patient/twin" in err.value.diagnostics
        with pytest.raises(DuplicatePatient):
            fetch(FetchRequest(patient_id=pid, persist=False))  # no answer for either
    assert versions(fhir) == before
    stored = fhir.store[("ImagingStudy", "1.2.1")]
    assert stored["subject"] == {"reference": "Patient/p12"}


@pytest.mark.parametrize(
    "extra",
    [
        {"link": [{"type": "replaced-by", "other": {"reference": "Patient/p12"}}]},
        {"identifier": [{"system": SYS_A, "value": "12", "use": "old"}]},
        {"identifier": [{"system": "urn:other", "value": "12"}]},
        {"identifier": [{"system": SYS_A, "value": "12", "period": {"end": "2020-01-01"}}]},
    ],
)
def test_merged_retired_or_unmapped_identifiers_are_no_conflict(world, extra):
    fetch, fhir, _ = world
    add_patient(fhir, "old-record", "12", **extra)
    assert fetch(FetchRequest(patient_id="p12")).created == 2


def test_the_duplicate_check_costs_one_fhir_search(world):
    fetch, fhir, _ = world
    calls = []
    original = fhir.search
    fhir.search = lambda *a, **k: calls.append(a) or original(*a, **k)
    fetch(FetchRequest(patient_id="p12"))
    assert len(calls) == 1


def test_detail_shapes_the_answer_and_never_the_stored_study(world, httpserver):
    from tests.unit.fake_dicomweb import instance_row

    fetch, fhir, pacs = world
    pacs.server.instances["1.2.1"] = [instance_row("1.2.1", "1.2.1.1", "1.2.1.1.1")]
    first = fetch(FetchRequest(patient_id="p12", detail=Detail.STUDY))
    assert all("series" not in s for s in first.studies)
    stored = fhir.store[("ImagingStudy", "1.2.1")]
    assert stored["series"][0]["instance"][0]["uid"] == "1.2.1.1.1"
    before = versions(fhir)
    for detail in (Detail.SERIES, Detail.STUDY, Detail.INSTANCE, Detail.STUDY):
        answer = fetch(FetchRequest(patient_id="p12", detail=detail))
        study = next(s for s in answer.studies if s["id"] == "1.2.1")
        assert ("series" in study) == (detail is not Detail.STUDY)
        if detail is Detail.SERIES:
            assert "instance" not in study["series"][0]
    assert versions(fhir) == before


@pytest.mark.parametrize("value", ["12\x01", " 12", "12 ", "12\t"])
def test_type_level_lookup_compares_the_identifier_exactly(world, value):
    fetch, fhir, _ = world
    with pytest.raises(PatientNotFound):
        fetch(FetchRequest(identifier=(SYS_A, value.encode().decode("unicode_escape"))))
    assert not fhir.transactions


def test_a_study_record_with_an_invalid_uid_is_named_not_called_foreign(world):
    fetch, _, pacs = world
    pacs["bad"] = study_record("12", "1.2.x")
    result = fetch(FetchRequest(patient_id="p12"))
    texts = [i["diagnostics"] for i in result.issues]
    assert any("'1.2.x' is not a valid DICOM UID" in t for t in texts), texts
    assert not any("1.2.x" in t and "not exactly" in t for t in texts)


def test_steady_state_reads_no_instances_and_a_refresh_reads_all(world):
    from tests.unit.fake_dicomweb import instance_row

    fetch, fhir, pacs = world
    counts = {"00201206": {"vr": "IS", "Value": [1]}, "00201208": {"vr": "IS", "Value": [1]}}
    for uid, date in (("1.2.1", "20200101"), ("1.2.2", "20210101")):
        pacs[uid] = study_record("12", uid, date=date) | counts  # as Orthanc answers
        pacs.server.instances[uid] = [instance_row(uid, f"{uid}.1", f"{uid}.1.1")]
    fetch(FetchRequest(patient_id="p12"))
    before = versions(fhir)

    def instance_queries() -> int:
        return sum(1 for path, _ in pacs.server.queries if path.endswith("/instances"))

    first = instance_queries()
    assert first == 2, pacs.server.queries
    again = fetch(FetchRequest(patient_id="p12"))
    assert instance_queries() == first  # nothing changed at study level: no instance query
    assert versions(fhir) == before and again.unchanged == 2
    assert all(s["series"][0]["instance"] for s in again.studies)
    fetch(FetchRequest(patient_id="p12", refresh=True))
    assert instance_queries() == first + 2
    # a new instance changes NumberOfStudyRelatedInstances: that study is read again
    pacs["1.2.1"] = study_record("12", "1.2.1") | counts | {"00201208": {"vr": "IS", "Value": [2]}}
    pacs.server.instances["1.2.1"].append(instance_row("1.2.1", "1.2.1.1", "1.2.1.1.2"))
    changed = fetch(FetchRequest(patient_id="p12"))
    assert instance_queries() == first + 3
    study = next(s for s in changed.studies if s["id"] == "1.2.1")
    assert len(study["series"][0]["instance"]) == 2 and changed.updated == 1


@pytest.mark.parametrize(("system", "value"), [(SYS_PLAIN, "12"), (SYS_A_NEW, "12")])
def test_another_system_naming_the_same_pacs_patient_is_a_conflict(world, system, value):
    """An issuer-less system takes the PatientID's studies under every issuer, and a second
    system mapped to the same issuer names the same patient: both claim p12's studies."""
    fetch, fhir, _ = world
    fetch(FetchRequest(patient_id="p12"))
    before = versions(fhir)
    fhir.store[("Patient", "other")] = {
        "resourceType": "Patient",
        "id": "other",
        "identifier": [{"system": system, "value": value}],
    }
    for pid in ("other", "p12"):
        with pytest.raises((DuplicatePatient, AmbiguousPatient)) as err:  # both 409
            fetch(FetchRequest(patient_id=pid))
        assert err.value.status == 409
    assert versions(fhir) == before


def test_an_issuerless_identifier_is_refused_when_the_pacs_mixes_issuers(world):
    fetch, fhir, _ = world  # the PACS files PatientID 12 under HOSP-A and HOSP-B
    fhir.store[("Patient", "plain")] = {
        "resourceType": "Patient",
        "id": "plain",
        "identifier": [{"system": SYS_PLAIN, "value": "12"}],
    }
    del fhir.store[("Patient", "p12")]
    with pytest.raises(AmbiguousPatient, match="several issuers"):
        fetch(FetchRequest(patient_id="plain"))
    assert not fhir.transactions


def test_an_issuerless_identifier_meeting_records_with_and_without_issuer_is_refused(world):
    """PatientID 7 filed once without issuer and once under HOSP-B may be two people: an
    identifier system that implies no issuer cannot tell them apart (409, both named, and
    never the PatientID itself), nothing written."""
    fetch, fhir, pacs = world
    pacs["7.1"] = study_record("7", "7.1", issuer=None)
    pacs["7.2"] = study_record("7", "7.2", issuer="HOSP-B")
    fhir.store[("Patient", "plain7")] = {
        "resourceType": "Patient",
        "id": "plain7",
        "identifier": [{"system": SYS_PLAIN, "value": "7"}],
    }
    with pytest.raises(AmbiguousPatient) as err:
        fetch(FetchRequest(patient_id="plain7"))
    assert "HOSP-B" in err.value.diagnostics and "(no issuer)" in err.value.diagnostics
    assert "'7'" not in err.value.diagnostics
    assert not fhir.transactions


def test_series_rows_that_do_not_say_whose_they_are_are_left_out(world):
    """The series/instance query asks for PatientID and IssuerOfPatientID; a PACS that
    answers a row without them (following the include list strictly, or not at all) does
    not get that row into another patient's study: it is left out, with a warning."""
    from tests.unit.fake_dicomweb import instance_row

    fetch, _, pacs = world
    pacs.server.instances["1.2.1"] = [instance_row("1.2.1", "1.2.1.1", "1.2.1.1.1")]
    pacs.server._with_patient = lambda uid, rows, query: rows  # names no patient at all
    result = fetch(FetchRequest(patient_id="p12"))
    study = next(s for s in result.studies if s["id"] == "1.2.1")
    assert "series" not in study or not study["series"]
    assert any("did not say whose they are" in i["diagnostics"] for i in result.issues)


def test_an_identifier_that_ends_in_the_future_is_still_in_use(world):
    fetch, fhir, _ = world
    fhir.store[("Patient", "p12")]["identifier"][0]["period"] = {"end": "2999-12-31"}
    assert fetch(FetchRequest(patient_id="p12")).created == 2
    fhir.store[("Patient", "p123")]["identifier"][0]["period"] = {"end": "2001-01-01"}
    with pytest.raises(NotMappable):
        fetch(FetchRequest(patient_id="p123"))


def test_one_study_uid_for_two_patients_neither_moves_nor_mixes(world):
    from tests.unit.fake_dicomweb import instance_row

    fetch, fhir, pacs = world
    pacs.server.instances["1.2.1"] = [instance_row("1.2.1", "1.2.1.1", "1.2.1.1.1")]
    fetch(FetchRequest(patient_id="p12"))
    before = versions(fhir)
    # the PACS now also files StudyInstanceUID 1.2.1 under PatientID 123 (another person)
    evil = instance_row("1.2.1", "6.6.6", "6.6.6.1") | {"00100020": {"vr": "LO", "Value": ["123"]}}
    pacs.server.instances["1.2.1"].append(evil)
    pacs.server.studies.append(study_record("123", "1.2.1"))
    mine = fetch(FetchRequest(patient_id="p12", refresh=True))
    study = next(s for s in mine.studies if s["id"] == "1.2.1")
    assert [s["uid"] for s in study["series"]] == ["1.2.1.1"]  # not the other's series
    theirs = fetch(FetchRequest(patient_id="p123"))
    assert "1.2.1" not in {s["id"] for s in theirs.studies}
    assert any("not moved" in i["diagnostics"] for i in theirs.issues)
    stored = fhir.store[("ImagingStudy", "1.2.1")]
    assert stored["subject"] == {"reference": "Patient/p12"}
    assert versions(fhir)[("ImagingStudy", "1.2.1")] == before[("ImagingStudy", "1.2.1")]


def test_a_study_a_change_log_named_is_re_read_and_the_others_reused(world):
    from tests.unit.fake_dicomweb import instance_row

    fetch, fhir, pacs = world
    counts = {"00201206": {"vr": "IS", "Value": [1]}, "00201208": {"vr": "IS", "Value": [1]}}
    for uid, date in (("1.2.1", "20200101"), ("1.2.2", "20210101")):
        pacs[uid] = study_record("12", uid, date=date) | counts
        pacs.server.instances[uid] = [instance_row(uid, f"{uid}.1", f"{uid}.1.1")]
    fetch(FetchRequest(patient_id="p12"))
    # an instance replaced under the same counts (same SOP Class, another modality)
    pacs.server.instances["1.2.1"] = [instance_row("1.2.1", "1.2.1.1", "1.2.1.1.9", "MR")]
    seen = len(pacs.server.queries)
    result = fetch(FetchRequest(patient_id="p12", refresh_studies=frozenset({"1.2.1"})))
    read = [path for path, _ in pacs.server.queries[seen:] if path.endswith("/instances")]
    assert read == ["/dicom-web/studies/1.2.1/instances"]  # only the named study
    study = next(s for s in result.studies if s["id"] == imaging_study_id("1.2.1"))
    assert study["series"][0]["instance"][0]["uid"] == "1.2.1.1.9"
    assert result.updated == 1 and result.unchanged == 1


@pytest.fixture
def two_pacs(httpserver):
    """PACS main and second on one fake server, one Patient whose MRN both know."""
    servers = {
        name: FakeDicomWeb(httpserver, root=f"/{name}/dicom-web").install()
        for name in ("main", "second")
    }
    settings = load_settings(
        {
            "SIDECAR_PATIENT_IDENTIFIERS": f"{SYS_A}|HOSP-A",
            "SIDECAR_PACS": "main,second",
            "SIDECAR_PACS_MAIN_URL": servers["main"].url,
            "SIDECAR_PACS_SECOND_URL": servers["second"].url,
            "SIDECAR_PACS_RETRIES": "0",
        }
    )
    fhir = FakeFhir()
    fhir.store[("Patient", "p12")] = {
        "resourceType": "Patient",
        "id": "p12",
        "identifier": [{"system": SYS_A, "value": "12"}],
    }
    clients = {name: DicomwebPacs(settings.pacs[name], settings.qido) for name in servers}
    yield settings, servers, FetchImaging(settings, fhir, clients)
    for client in clients.values():
        client.close()


def _hold(server: FakeDicomWeb, uid: str, series: dict[str, list[str]]) -> None:
    """``server`` holds study ``uid`` with these series (UID -> SOP instance UIDs)."""
    from tests.unit.fake_dicomweb import instance_row

    rows = [instance_row(uid, s, sop) for s, sops in series.items() for sop in sops]
    counts = {
        "00201206": {"vr": "IS", "Value": [len(series)]},
        "00201208": {"vr": "IS", "Value": [len(rows)]},
    }
    server.studies = [study_record("12", uid) | counts] if series else []
    server.instances[uid] = rows


def _endpoints(settings, study) -> list[str]:
    names = {f"Endpoint/{p.endpoint_id}": p.name for p in settings.pacs.values()}
    return [names[e["reference"]] for e in study["endpoint"]]


def _series(study) -> dict[str, list[str]]:
    return {s["uid"]: [i["uid"] for i in s.get("instance", [])] for s in study.get("series", [])}


def _instance_queries(servers) -> int:
    return sum(p.endswith("/instances") for s in servers.values() for p, _ in s.queries)


def test_a_study_in_two_pacs_is_steady_and_keeps_only_the_endpoints_that_hold_it(two_pacs):
    settings, servers, fetch = two_pacs
    for server in servers.values():
        _hold(server, "1.2.1", {"1.2.1.1": ["1.2.1.1.1"]})
    first = fetch(FetchRequest(patient_id="p12"))
    assert _endpoints(settings, first.studies[0]) == ["main", "second"]
    seen = _instance_queries(servers)
    again = fetch(FetchRequest(patient_id="p12"))
    assert _instance_queries(servers) == seen  # steady in both PACS
    assert again.unchanged == 1
    _hold(servers["second"], "1.2.1", {})  # PACS second deleted its copy
    gone = fetch(FetchRequest(patient_id="p12"))
    assert _endpoints(settings, gone.studies[0]) == ["main"]
    assert gone.studies[0]["status"] == "available"


def test_a_study_split_over_two_pacs_holds_the_series_of_both(two_pacs):
    settings, servers, fetch = two_pacs
    _hold(servers["main"], "1.2.1", {"1.2.1.1": ["1.2.1.1.1", "1.2.1.1.2"]})
    _hold(servers["second"], "1.2.1", {"1.2.1.1": ["1.2.1.1.2"], "1.2.1.2": ["1.2.1.2.1"]})
    study = fetch(FetchRequest(patient_id="p12")).studies[0]
    assert _series(study) == {
        "1.2.1.1": ["1.2.1.1.1", "1.2.1.1.2"],
        "1.2.1.2": ["1.2.1.2.1"],
    }
    assert (study["numberOfSeries"], study["numberOfInstances"]) == (2, 3)
    assert _endpoints(settings, study) == ["main", "second"]
    # PACS second loses the series only it had: read again from both, the series goes
    _hold(servers["second"], "1.2.1", {"1.2.1.1": ["1.2.1.1.2"]})
    after = fetch(FetchRequest(patient_id="p12"))
    assert _series(after.studies[0]) == {"1.2.1.1": ["1.2.1.1.1", "1.2.1.1.2"]}
    assert (after.studies[0]["numberOfSeries"], after.studies[0]["numberOfInstances"]) == (1, 2)
    assert after.updated == 1


def test_a_study_that_appears_in_a_second_pacs_gains_its_series(two_pacs):
    settings, servers, fetch = two_pacs
    _hold(servers["main"], "1.2.1", {"1.2.1.1": ["1.2.1.1.1"]})
    fetch(FetchRequest(patient_id="p12"))
    _hold(servers["second"], "1.2.1", {"1.2.1.2": ["1.2.1.2.1"]})
    study = fetch(FetchRequest(patient_id="p12")).studies[0]
    assert _series(study) == {"1.2.1.1": ["1.2.1.1.1"], "1.2.1.2": ["1.2.1.2.1"]}
    assert _endpoints(settings, study) == ["main", "second"]
