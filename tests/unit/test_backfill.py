"""Backfill: the date-window walk, patient grouping, identifier choice and the checkpoint."""

from __future__ import annotations

import json
from datetime import date

import pytest

from sidecar.adapters.checkpoint import Checkpoint
from sidecar.core.backfill_plan import Window, date_windows, group_by_patient
from sidecar.core.identity import DicomPatient, identifier_mapping_for, patient_resource
from sidecar.settings import IdentifierMapping, PacsSettings

TODAY = date(2024, 3, 10)


def _pacs(*mappings: IdentifierMapping) -> PacsSettings:
    return PacsSettings(name="bulk", url="http://x/dicom-web", patient_identifiers=mappings)


def _record(pid: str | None, issuer: str | None, uid: str, instances: int = 3, **extra) -> dict:
    rec = {"0020000D": {"vr": "UI", "Value": [uid]}, "00201208": {"vr": "IS", "Value": [instances]}}
    if pid is not None:
        rec["00100020"] = {"vr": "LO", "Value": [pid]}
    if issuer is not None:
        rec["00100021"] = {"vr": "LO", "Value": [issuer]}
    rec.update(extra)
    return rec


# -- windows -------------------------------------------------------------------------------------


def test_windows_cover_the_range_without_gaps_or_overlaps():
    windows = date_windows(date(2024, 1, 1), date(2024, 3, 1), 30, today=TODAY)
    assert windows == [
        Window(date(2024, 1, 1), date(2024, 1, 30)),
        Window(date(2024, 1, 31), date(2024, 2, 29)),
        Window(date(2024, 3, 1), date(2024, 3, 1)),
    ]
    for a, b in zip(windows, windows[1:], strict=False):
        assert (b.start - a.end).days == 1


def test_without_bounds_open_windows_catch_old_and_future_studies():
    windows = date_windows(None, None, 3650, today=TODAY)
    assert windows[0] == Window(None, date(1999, 12, 31))
    assert windows[1].start == date(2000, 1, 1)
    assert windows[-2].end == TODAY
    assert windows[-1] == Window(date(2024, 3, 11), None)
    assert [w.label for w in (windows[0], windows[-1])] == ["-19991231", "20240311-"]


def test_single_day_window_label_is_a_single_date():
    assert Window(date(2024, 1, 5), date(2024, 1, 5)).label == "20240105"


@pytest.mark.parametrize("days", [0, -1])
def test_window_days_must_be_positive(days):
    with pytest.raises(ValueError):
        date_windows(date(2024, 1, 1), date(2024, 2, 1), days, today=TODAY)


def test_until_before_since_is_an_error():
    with pytest.raises(ValueError, match="before"):
        date_windows(date(2024, 2, 1), date(2024, 1, 1), 7, today=TODAY)


# -- grouping and identifiers -------------------------------------------------------------------


def test_groups_are_exact_patient_id_and_issuer():
    records = [
        _record("12", "HOSP-A", "1.1"),
        _record("123", "HOSP-A", "1.2"),
        _record("abc", "HOSP-A", "1.3"),
        _record("ABC", "HOSP-A", "1.4"),
        _record("P-SAME", "HOSP-A", "1.5"),
        _record("P-SAME", "HOSP-B", "1.6"),
        _record("P-SAME", "HOSP-B", "1.7", instances=5),
        _record("P-SAME", "HOSP-B", "1.7", instances=5),  # the same study twice: counted once
        _record(None, None, "1.8"),
    ]
    groups, without_id = group_by_patient(records)
    assert without_id == 1
    assert set(groups) == {
        DicomPatient("12", "HOSP-A"),
        DicomPatient("123", "HOSP-A"),
        DicomPatient("abc", "HOSP-A"),
        DicomPatient("ABC", "HOSP-A"),
        DicomPatient("P-SAME", "HOSP-A"),
        DicomPatient("P-SAME", "HOSP-B"),
    }
    beta = groups[DicomPatient("P-SAME", "HOSP-B")]
    assert beta.study_uids == ["1.6", "1.7"]
    assert beta.instances == 8


A = IdentifierMapping("urn:a", "HOSP-A")
B = IdentifierMapping("urn:b", "HOSP-B")
NONE = IdentifierMapping("urn:plain", None)


@pytest.mark.parametrize(
    ("mappings", "issuer", "expected"),
    [
        ((A, B, NONE), "HOSP-A", A),
        ((A, B, NONE), "HOSP-B", B),
        ((A, B, NONE), None, NONE),
        ((A, B, NONE), "HOSP-C", None),  # would merge HOSP-C's patients into urn:plain's
        ((A, B), None, None),
        ((NONE,), "HOSP-C", NONE),  # a PatientID-only PACS: the issuer is not used anywhere
        ((), "HOSP-A", None),
    ],
)
def test_identifier_system_per_issuer(mappings, issuer, expected):
    assert identifier_mapping_for(_pacs(*mappings), issuer) == expected


def test_created_patient_carries_the_mapped_identifier_only():
    record = _record(
        "P-1",
        "HOSP-A",
        "1.1",
        **{
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
            "00100040": {"vr": "CS", "Value": ["F"]},
            "00100030": {"vr": "DA", "Value": ["19700412"]},
        },
    )
    patient = patient_resource(record, A, DicomPatient("P-1", "HOSP-A"))
    assert patient["identifier"] == [{"system": "urn:a", "value": "P-1"}]
    assert patient["gender"] == "female"
    assert patient["birthDate"] == "1970-04-12"
    assert patient["name"][0]["family"] == "Doe"
    assert "id" not in patient


# -- checkpoint ----------------------------------------------------------------------------------

PARAMS = {"pacs": "bulk", "since": None, "window_days": 30}


def test_checkpoint_round_trip_and_window_completion(tmp_path):
    path = Checkpoint.path_for(tmp_path, "bulk", PARAMS)
    cp = Checkpoint.load(path, PARAMS)
    cp.mark_patient("20240101-20240130", "P-1|HOSP-A", 10)
    cp.mark_patient("20240131-20240229", "P-2|", 7)
    again = Checkpoint.load(path, PARAMS)
    assert again.patient_done("20240101-20240130", "P-1|HOSP-A")
    assert not again.patient_done("20240101-20240130", "P-2|")
    assert again.instances_done == 17

    again.mark_window("20240101-20240130", 12)
    final = Checkpoint.load(path, PARAMS)
    assert final.window_done("20240101-20240130")
    assert final.patients == {"20240131-20240229": {"P-2|": 7}}
    assert final.instances_done == 19
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


def test_checkpoint_of_other_parameters_or_restart_is_ignored(tmp_path):
    path = Checkpoint.path_for(tmp_path, "bulk", PARAMS)
    Checkpoint.load(path, PARAMS).mark_window("20240101-20240130", 1)
    other = {**PARAMS, "window_days": 7}
    assert Checkpoint.path_for(tmp_path, "bulk", other) != path
    assert not Checkpoint.load(path, other).windows  # same file, other parameters
    assert not Checkpoint.load(path, PARAMS, restart=True).windows
    assert Checkpoint.load(path, PARAMS).windows == {"20240101-20240130": 1}


def test_unreadable_checkpoint_starts_afresh(tmp_path):
    path = Checkpoint.path_for(tmp_path, "bulk", PARAMS)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert Checkpoint.load(path, PARAMS).windows == {}
    path.write_text(json.dumps({"version": 99, "params": PARAMS, "windows": {"x": 1}}))
    assert Checkpoint.load(path, PARAMS).windows == {}
