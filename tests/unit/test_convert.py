"""convert: files/folders/DICOMDIR -> Bundle; every skipped file named with why (stderr and
the OperationOutcome), truncated files left out; --out checked first and written
atomically; idempotent transactions that never invent a Patient id; same bundle whatever
the number of workers."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pydicom.data
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from sidecar.core.mapping import imaging_study_id, validate_r4
from sidecar.entry.cli.convert import DEFER_BYTES, convert_paths, read_header
from sidecar.settings import IdentifierMapping
from sidecar.wiring.cli import main

#: PatientIDs of pydicom's CT_small and MR_small (no issuer): never printed.
PATIENT_IDS = ("1CT1", "4MR1")
PLAIN = "urn:example:mrn"  # a system for PatientIDs alone (no IssuerOfPatientID)


def of_type(bundle, resource_type):
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


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
    bundle, summary = convert_paths(
        [folder],
        bundle_type="transaction",
        workers=1,
        patient_identifiers=[IdentifierMapping(PLAIN)],
    )
    validate_r4(bundle)
    for entry in bundle["entry"]:
        resource, request = entry["resource"], entry["request"]
        assert entry["fullUrl"].startswith("urn:uuid:")
        if resource["resourceType"] == "ImagingStudy":
            assert request == {"method": "PUT", "url": f"ImagingStudy/{resource['id']}"}
            uid = resource["identifier"][0]["value"].removeprefix("urn:oid:")
            assert resource["id"] == imaging_study_id(uid)
            assert resource["subject"]["reference"].startswith("urn:uuid:")
        else:  # never a PUT on an id made up here
            assert "id" not in resource
            value = resource["identifier"][0]["value"]
            assert request == {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": f"identifier={PLAIN}|{value}",
            }
    # test-SR.dcm has no PatientID: no identifier to find its Patient by, left out
    assert len(of_type(bundle, "Patient")) == 2 and summary.studies == 2
    assert len(summary.left_out) == 1 and "no PatientID (0010,0020)" in summary.left_out[0]


def test_patient_reference_and_worker_count_do_not_change_output(folder):
    one, _ = convert_paths([folder], patient_reference="Patient/9", workers=1)
    two, _ = convert_paths([folder], patient_reference="Patient/9", workers=2, chunk_size=1)
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    studies = of_type(one, "ImagingStudy")
    assert len(studies) == 3
    assert all(e["resource"]["subject"] == {"reference": "Patient/9"} for e in studies)


def test_dicomdir_is_followed_and_not_counted_as_an_instance(tmp_path):
    from pydicom.fileset import FileSet

    fs = FileSet()
    fs.add(dcmread(get_testdata_file("CT_small.dcm")))
    fs.add(dcmread(get_testdata_file("MR_small.dcm")))
    fs.write(tmp_path / "cd")
    bundle, summary = convert_paths([tmp_path / "cd" / "DICOMDIR"], workers=1)
    assert summary.dicomdir == 1 and summary.dicom_files == 2 and summary.studies == 2
    bundle2, summary2 = convert_paths([tmp_path / "cd"], workers=1)
    assert json.dumps(bundle, sort_keys=True) == json.dumps(bundle2, sort_keys=True)


def test_header_reader_leaves_pixel_data_on_disk(tmp_path):
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.PixelData = bytes(2 * DEFER_BYTES)  # a value as long as a real image's
    ds.save_as(tmp_path / "big.dcm")
    pixels = read_header(tmp_path / "big.dcm").get_item("PixelData", keep_deferred=True)
    assert pixels.length == 2 * DEFER_BYTES and pixels.value is None  # not read


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


# --------------------------------------------------------------------------------------------
# Every file left out is named, with why
# --------------------------------------------------------------------------------------------


def cut(source, path, size):
    """A copy of *source* that ends after *size* bytes (an interrupted copy)."""
    path.write_bytes(Path(source).read_bytes()[:size])
    return path


@pytest.fixture()
def damaged(tmp_path):
    """One intact file and one of each reason a file is skipped; returns (folder, reasons)."""
    folder = tmp_path / "in"
    folder.mkdir()
    ct = get_testdata_file("CT_small.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm"), folder / "intact.dcm")
    cut(ct, folder / "truncated.dcm", Path(ct).stat().st_size - 1000)  # inside PixelData
    no_uids = dcmread(ct)
    del no_uids.StudyInstanceUID
    no_uids.save_as(folder / "no-uids.dcm")
    report = get_testdata_file("reportsi.dcm")  # an SR: items of undefined length
    cut(report, folder / "unreadable.dcm", Path(report).stat().st_size // 2)
    (folder / "notes.txt").write_text("not dicom")
    reasons = {
        folder / "truncated.dcm": "truncated",
        folder / "no-uids.dcm": "no UIDs",
        folder / "unreadable.dcm": "unreadable",
        folder / "notes.txt": "not DICOM",
        tmp_path / "gone.dcm": "missing",  # named on the command line, not there
    }
    return folder, reasons


def test_every_skipped_file_is_named_with_why_on_stderr_and_in_the_outcome(damaged, capsys):
    folder, reasons = damaged
    code = main(["convert", str(folder), str(folder.parent / "gone.dcm"), "--workers", "1"])
    assert code == 1  # written, but DICOM data was left out
    captured = capsys.readouterr()
    for path, reason in reasons.items():
        assert f"  skipped: {path}: {reason}: " in captured.err, (path, captured.err)
    assert "files: 6 (DICOM 1, non-DICOM skipped 1, missing 1, unreadable 1, truncated 1, " in (
        captured.err
    )
    bundle = json.loads(captured.out)
    validate_r4(bundle)
    (outcome,) = [e["resource"] for e in of_type(bundle, "OperationOutcome")]
    named = {i["diagnostics"]: i for i in outcome["issue"] if "file skipped" in i["diagnostics"]}
    for path, reason in reasons.items():
        (issue,) = [i for text, i in named.items() if f": {path}: {reason}: " in text]
        assert issue["severity"] == ("information" if reason == "not DICOM" else "error")
    assert len(of_type(bundle, "ImagingStudy")) == 1
    assert not any(pid in captured.err for pid in PATIENT_IDS)


def test_a_truncated_file_is_left_out_and_says_which_element(damaged):
    folder, _ = damaged
    bundle, summary = convert_paths([folder / "truncated.dcm"], workers=1)
    assert not of_type(bundle, "ImagingStudy")
    assert summary.truncated == 1 and summary.dicom_files == 0 and summary.studies == 0
    (skipped,) = summary.skipped
    assert skipped.detail.startswith("PixelData (7FE0,0010) declares 32768 bytes from byte ")
    # CT_small: PixelData ends 138 bytes before the file, Dataset Trailing Padding follows
    assert skipped.detail.endswith("the file ends at byte 38206 (862 bytes missing)")


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("CT_small.dcm", 2000),  # inside an element's header
        ("CT_small.dcm", 999),  # inside a short value that pydicom reads whole
        ("SC_rgb_jpeg.dcm", 2232),  # inside encapsulated PixelData (undefined length)
        ("JPEG2000.dcm", -20),  # just before its sequence delimiter
    ],
)
def test_a_file_cut_anywhere_is_truncated(tmp_path, name, where):
    source = get_testdata_file(name)
    size = Path(source).stat().st_size
    path = cut(source, tmp_path / name, where if where > 0 else size + where)
    bundle, summary = convert_paths([path], workers=1)
    assert not of_type(bundle, "ImagingStudy")
    assert [s.reason for s in summary.skipped] == ["truncated"], summary.skipped


def test_no_intact_test_file_of_pydicom_reads_as_truncated():
    """The check must not cry wolf: pydicom's own test files, compressed, big endian,
    implicit VR, deflated, private sequences, are whole except the two made truncated."""
    from sidecar.entry.cli.convert import read_file

    folder = Path(pydicom.data.__file__).parent / "test_files"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flagged = {
            path.name
            for path in folder.glob("*.dcm")
            if getattr(read_file(str(path)), "reason", None) == "truncated"
        }
    assert flagged == {"MR_truncated.dcm", "rtplan_truncated.dcm"}


# --------------------------------------------------------------------------------------------
# --out: checked before any file is read, written whole or not at all
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("out", "why"),
    [
        ("missing-dir/bundle.json", "No such file or directory"),
        ("a-file/bundle.json", "Not a directory"),
        (".", "is a directory"),
    ],
)
def test_out_that_cannot_be_written_fails_at_once(folder, tmp_path, capsys, monkeypatch, out, why):
    (tmp_path / "a-file").write_text("")
    read = []
    monkeypatch.setattr("sidecar.entry.cli.convert.read_chunk", lambda *a: read.append(a))
    monkeypatch.chdir(tmp_path)
    assert main(["convert", str(folder), "--out", out, "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and why in err and "Traceback" not in err
    assert err.startswith(f"dicom-fhir convert: {out}: ")
    assert not read  # before any file was read


def test_an_interrupted_write_leaves_the_previous_bundle_and_no_temporary(
    folder, tmp_path, monkeypatch
):
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "bundle.json"
    out.write_text("previous")

    def interrupted(fd):
        raise KeyboardInterrupt  # Ctrl-C once the data is in the temporary file

    monkeypatch.setattr("sidecar.entry.cli.convert.os.fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(["convert", str(folder), "--out", str(out), "--workers", "1"])
    assert out.read_text() == "previous"
    assert [p.name for p in out.parent.iterdir()] == ["bundle.json"]


def test_outcome_file_for_a_transaction(damaged, tmp_path):
    folder, reasons = damaged
    out, outcome = tmp_path / "bundle.json", tmp_path / "outcome.json"
    args = ["convert", str(folder), "--bundle", "transaction", "--patient", "Patient/1"]
    assert main([*args, "--out", str(out), "--outcome", str(outcome), "--workers", "1"]) == 1
    bundle = json.loads(out.read_text())
    assert not of_type(bundle, "OperationOutcome")  # R4 bdl-3: it would be stored
    report = json.loads(outcome.read_text())
    assert report["resourceType"] == "OperationOutcome"
    assert sum("file skipped" in i["diagnostics"] for i in report["issue"]) == len(reasons) - 1


# --------------------------------------------------------------------------------------------
# Transactions never invent a Patient id
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def same_id_two_issuers(tmp_path):
    """P-SAME under HOSP-A and under HOSP-B: two people (issuers that are no URI or OID)."""
    from sidecar.samples.generator import SamplePatient, generate_studies, write_files

    same = [
        SamplePatient("P-SAME", "HOSP-A", "Same^Alpha", "19500505", "M"),
        SamplePatient("P-SAME", "HOSP-B", "Same^Beta", "19830830", "F"),
    ]
    studies = generate_studies(patients=same, series_per_study=1, instances_per_series=1)
    write_files([ds for _, instances in studies for ds in instances], tmp_path / "dicom")
    return tmp_path / "dicom"


def test_issuers_without_a_mapping_are_refused_not_given_an_invented_id(
    same_id_two_issuers, capsys
):
    code = main(["convert", str(same_id_two_issuers), "--bundle", "transaction", "--workers", "1"])
    assert code == 1
    captured = capsys.readouterr()
    bundle = json.loads(captured.out)
    assert not of_type(bundle, "Patient") and not of_type(bundle, "ImagingStudy")
    assert not any(e["request"]["url"].startswith("Patient/") for e in bundle["entry"])
    left_out = [line for line in captured.err.splitlines() if "left out: " in line]
    assert len(left_out) == 2
    for issuer in ("HOSP-A", "HOSP-B"):
        assert any(f"'{issuer}' is no URI or OID" in line for line in left_out), left_out
        assert any(f"add 'SYSTEM|{issuer}'" in line for line in left_out)
    for forbidden in ("P-SAME", "Alpha", "Beta", "19500505", "1950-05-05"):
        assert forbidden not in captured.err


def test_patient_identifiers_give_each_issuer_its_conditional_create(same_id_two_issuers, capsys):
    mappings = "urn:example:a|HOSP-A, urn:example:b|HOSP-B"
    args = ["convert", str(same_id_two_issuers), "--bundle", "transaction", "--workers", "1"]
    assert main([*args, "--patient-identifiers", mappings]) == 0
    bundle = json.loads(capsys.readouterr().out)
    validate_r4(bundle)
    patients = of_type(bundle, "Patient")
    conditions = sorted(e["request"]["ifNoneExist"] for e in patients)
    assert conditions == ["identifier=urn:example:a|P-SAME", "identifier=urn:example:b|P-SAME"]
    assert all(
        e["request"] == {**e["request"], "method": "POST", "url": "Patient"} for e in patients
    )
    subjects = {e["resource"]["subject"]["reference"] for e in of_type(bundle, "ImagingStudy")}
    assert subjects == {e["fullUrl"] for e in patients}  # urn:uuid, resolved by the server


def test_patient_identifiers_follow_the_settings_rule_and_syntax(same_id_two_issuers, capsys):
    from sidecar.entry.cli.convert import identifier_mappings
    from sidecar.settings import load_settings

    text = "urn:example:a|HOSP-A,urn:example:plain"
    settings = load_settings({"SIDECAR_PATIENT_IDENTIFIERS": text})
    assert identifier_mappings(text) == settings.pacs["main"].patient_identifiers
    # one rule (identity.identifier_mapping_in): a mapping without issuer does not serve
    # HOSP-B while another names an issuer: the same PatientID would become one Patient
    args = ["convert", str(same_id_two_issuers), "--bundle", "transaction", "--workers", "1"]
    assert main([*args, "--patient-identifiers", text]) == 1
    bundle = json.loads(capsys.readouterr().out)
    assert [e["request"]["ifNoneExist"] for e in of_type(bundle, "Patient")] == [
        "identifier=urn:example:a|P-SAME"
    ]
    with pytest.raises(SystemExit) as exited:
        main([*args, "--patient-identifiers", "|HOSP-A"])
    assert exited.value.code == 2 and "the system is empty" in capsys.readouterr().err
