"""convert: files/folders/DICOMDIR -> Bundle; non-DICOM skipped and counted; idempotent
transactions; same bundle whatever the number of workers."""

from __future__ import annotations

import json
import shutil

import pytest
from pydicom.data import get_testdata_file

from sidecar.core.mapping import imaging_study_id, validate_r4
from sidecar.core.mapping.tags import MAPPING_TAGS
from sidecar.entry.cli.convert import convert_paths, read_header
from sidecar.wiring.cli import main


@pytest.fixture()
def folder(tmp_path):
    for name in ("CT_small.dcm", "MR_small.dcm", "test-SR.dcm"):
        shutil.copy(get_testdata_file(name), tmp_path / name)
    (tmp_path / "sub").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "sub" / "IM0001")  # same SOP
    (tmp_path / "notes.txt").write_text("not dicom")
    (tmp_path / "empty.dcm").write_bytes(b"")
    return tmp_path


def test_collection_bundle_counts_and_validity(folder):
    bundle, summary = convert_paths([folder], timezone="Europe/Zurich", workers=1)
    validate_r4(bundle)
    assert bundle["type"] == "collection"
    assert summary.files == 6 and summary.dicom_files == 4 and summary.non_dicom == 2
    assert summary.studies == 3 and summary.instances == 3  # duplicate file merged
    studies = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ImagingStudy"
    ]
    patients = {e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"}
    assert len(studies) == 3 and all(s["subject"]["reference"] in patients for s in studies)


def test_transaction_is_idempotent_put_and_conditional_create(folder):
    bundle, _ = convert_paths([folder], bundle_type="transaction", workers=1)
    validate_r4(bundle)
    for entry in bundle["entry"]:
        resource, request = entry["resource"], entry["request"]
        # R4 lets fullUrl be empty only on a POST (HAPI's Bundle $validate: an error)
        assert entry["fullUrl"].startswith("urn:uuid:") or request["method"] == "POST"
        if resource["resourceType"] == "ImagingStudy":
            assert request == {"method": "PUT", "url": f"ImagingStudy/{resource['id']}"}
            uid = resource["identifier"][0]["value"].removeprefix("urn:oid:")
            assert resource["id"] == imaging_study_id(uid)
        elif request["method"] == "POST":
            assert request["ifNoneExist"].startswith("identifier=")
        else:
            assert request["url"] == f"Patient/{resource['id']}"


def test_patient_reference_and_worker_count_do_not_change_output(folder):
    one, _ = convert_paths([folder], patient_reference="Patient/9", workers=1)
    two, _ = convert_paths([folder], patient_reference="Patient/9", workers=2, chunk_size=1)
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    assert all(e["resource"]["subject"] == {"reference": "Patient/9"} for e in one["entry"])


def test_dicomdir_is_followed_and_not_counted_as_an_instance(tmp_path):
    from pydicom import dcmread
    from pydicom.fileset import FileSet

    fs = FileSet()
    fs.add(dcmread(get_testdata_file("CT_small.dcm")))
    fs.add(dcmread(get_testdata_file("MR_small.dcm")))
    fs.write(tmp_path / "cd")
    bundle, summary = convert_paths([tmp_path / "cd" / "DICOMDIR"], workers=1)
    assert summary.dicomdir == 1 and summary.dicom_files == 2 and summary.studies == 2
    bundle2, summary2 = convert_paths([tmp_path / "cd"], workers=1)
    assert json.dumps(bundle, sort_keys=True) == json.dumps(bundle2, sort_keys=True)


def test_header_reader_reads_only_mapping_tags():
    ds = read_header(get_testdata_file("CT_small.dcm"))
    assert {int(tag) for tag in ds.keys()} <= set(MAPPING_TAGS)  # noqa: SIM118 (tags, not elements)
    assert "PixelData" not in ds


def test_cli(folder, tmp_path, capsys):
    out = tmp_path / "bundle.json"
    code = main(
        [
            "convert",
            str(folder),
            "--out",
            str(out),
            "--bundle",
            "transaction",
            "--patient",
            "Patient/1",
            "--timezone",
            "Europe/Zurich",
            "--workers",
            "1",
        ]
    )
    assert code == 0
    bundle = json.loads(out.read_text())
    assert bundle["type"] == "transaction" and len(bundle["entry"]) == 3
    err = capsys.readouterr().err
    assert "non-DICOM skipped 2" in err and "studies: 3" in err
    assert main(["convert", str(folder), "--timezone", "Nowhere/Zone"]) == 2


def test_same_patient_id_under_two_plain_issuers_stays_two_patients(tmp_path):
    # HOSP-A/HOSP-B are no URI/OID: the identifier has no system, so a conditional create
    # on "identifier=|P-SAME" would make HAPI merge both into one Patient (seen on HAPI).
    from sidecar.samples.generator import SamplePatient, generate_studies, write_files

    same = [
        SamplePatient("P-SAME", "HOSP-A", "Same^Alpha", "19500505", "M"),
        SamplePatient("P-SAME", "HOSP-B", "Same^Beta", "19830830", "F"),
    ]
    studies = generate_studies(patients=same, series_per_study=1, instances_per_series=1)
    write_files([ds for _, instances in studies for ds in instances], tmp_path)
    bundle, _ = convert_paths([tmp_path], bundle_type="transaction", workers=1)
    validate_r4(bundle)
    requests = [e["request"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert len(requests) == 2 and all(r["method"] == "PUT" for r in requests)
    assert requests[0]["url"] != requests[1]["url"]
    subjects = {e["resource"]["subject"]["reference"] for e in bundle["entry"][2:]}
    assert subjects == {e["fullUrl"] for e in bundle["entry"][:2]}
