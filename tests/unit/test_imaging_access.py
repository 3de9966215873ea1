"""What the gateway lets a caller see of a PACS answer (sidecar/core/imaging_access.py)."""

from __future__ import annotations

from sidecar.core.identity import PatientKey
from sidecar.core.imaging_access import (
    StudyAccess,
    rewrite_urls,
    study_access,
    visible_rows,
    whole_is_allowed,
)

A = PatientKey("main", "urn:mrn", "A1", "HOSP")
STUDY = {
    "resourceType": "ImagingStudy",
    "id": "1.2",
    "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2"}],
    "subject": {"reference": "Patient/pa"},
    "endpoint": [{"reference": "Endpoint/dicomweb-main"}],
    "series": [{"uid": "1.2.1", "instance": [{"uid": "1.2.1.1"}, {"uid": "1.2.1.2"}]}],
}


def row(patient="A1", issuer="HOSP", study="1.2", series=None, instance=None) -> dict:
    r = {"0020000D": {"vr": "UI", "Value": [study]}}
    if patient:
        r["00100020"] = {"vr": "LO", "Value": [patient]}
    if issuer:
        r["00100021"] = {"vr": "LO", "Value": [issuer]}
    if series:
        r["0020000E"] = {"vr": "UI", "Value": [series]}
    if instance:
        r["00080018"] = {"vr": "UI", "Value": [instance]}
    return r


def access() -> StudyAccess:
    found = study_access(STUDY, "Endpoint/dicomweb-main", [A])
    assert found is not None
    return found


def test_a_study_of_another_pacs_gives_no_access():
    assert study_access(STUDY, "Endpoint/dicomweb-second", [A]) is None


def test_a_shared_study_uid_shows_only_this_patients_rows():
    """PatientID B1 files series 1.2.9 under the same StudyInstanceUID: never seen."""
    rows = [
        row(series="1.2.1"),
        row(patient="B1", series="1.2.9"),
        row(series="1.2.9"),  # names A but is not a series A's ImagingStudy lists
    ]
    assert visible_rows(rows, {"1.2": access()}, "series") == [rows[0]]
    studies = [row(), row(patient="B1"), row(issuer="OTHER"), row(study="9.9")]
    assert visible_rows(studies, {"1.2": access()}, "study") == [studies[0]]


def test_instances_must_be_listed():
    rows = [row(series="1.2.1", instance="1.2.1.1"), row(series="1.2.1", instance="1.2.1.9")]
    assert visible_rows(rows, {"1.2": access()}, "instance") == [rows[0]]


def test_metadata_items_without_an_issuer_count_once_the_rows_were_judged_with_it():
    """Orthanc's study-level metadata (StudiesMetadata: MainDicomTags) has no (0010,0021):
    after whole_is_allowed judged the PACS's rows with their issuer, an item naming the
    PatientID alone is the patient's; one naming another issuer or PatientID never is."""
    items = [
        row(issuer=None, series="1.2.1", instance="1.2.1.1"),
        row(issuer="OTHER", series="1.2.1", instance="1.2.1.2"),
        row(patient="B1", issuer=None, series="1.2.1", instance="1.2.1.2"),
    ]
    assert visible_rows(items, {"1.2": access()}, "instance") == []
    judged = visible_rows(items, {"1.2": access()}, "instance", issuer_checked=True)
    assert judged == [items[0]]


def test_a_whole_study_or_series_is_allowed_only_when_the_pacs_holds_nothing_else():
    assert whole_is_allowed(access(), None, [row(series="1.2.1")])
    assert not whole_is_allowed(
        access(), None, [row(series="1.2.1"), row(patient="B1", series="1.2.9")]
    )
    assert whole_is_allowed(access(), "1.2.1", [row(series="1.2.1", instance="1.2.1.1")])
    assert not whole_is_allowed(access(), "1.2.1", [row(series="1.2.1", instance="1.2.1.7")])


def test_urls_into_the_pacs_point_at_the_gateway_and_others_are_dropped():
    metadata = [
        {
            "00081190": {"vr": "UR", "Value": ["http://pacs:8042/dicom-web/studies/1.2"]},
            "7FE00010": {
                "vr": "OB",
                "BulkDataURI": "http://pacs:8042/dicom-web/studies/1.2/series/1.2.1/instances/1.2.1.1/bulk/7fe00010",
            },
            "00540016": {
                "vr": "SQ",
                "Value": [{"00181072": {"vr": "OB", "BulkDataURI": "http://evil.invalid/x"}}],
            },
        }
    ]
    out = rewrite_urls(metadata, "https://gw/dicomweb/main")[0]
    assert out["00081190"]["Value"] == ["https://gw/dicomweb/main/studies/1.2"]
    assert out["7FE00010"]["BulkDataURI"].startswith("https://gw/dicomweb/main/studies/1.2/series/")
    assert out["00540016"]["Value"][0]["00181072"]["BulkDataURI"] == ""
