"""The synthetic study generator: determinism, roster edge cases, valid DICOM, sizing."""

from __future__ import annotations

import io
import re
from collections import Counter

import pydicom
import pytest

from sidecar.samples.generator import (
    SamplePatient,
    _corpus_patient,
    generate_corpus,
    generate_studies,
    sample_patients,
    write_files,
)
from sidecar.samples.loader import to_bytes

_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def _small(seed: int = 0):
    return list(generate_studies(series_per_study=3, instances_per_series=2, seed=seed))


@pytest.fixture(scope="module")
def small():
    return _small()


def _all(studies):
    return [ds for _, dss in studies for ds in dss]


def test_same_parameters_give_identical_bytes(small):
    again = _small()
    first = [to_bytes(ds) for ds in _all(small)]
    second = [to_bytes(ds) for ds in _all(again)]
    assert first == second


def test_another_seed_gives_other_uids(small):
    few = sample_patients()[:3]
    other = list(generate_studies(series_per_study=1, instances_per_series=1, patients=few, seed=1))
    assert len(other) == 3
    assert {s.study_uid for s, _ in small}.isdisjoint({s.study_uid for s, _ in other})


def test_study_uids_do_not_depend_on_the_other_patients(small):
    patient = sample_patients()[3]
    alone = list(generate_studies(series_per_study=3, instances_per_series=2, patients=[patient]))
    assert [s.study_uid for s, _ in alone] == [
        s.study_uid for s, _ in small if s.patient == patient
    ]


def test_other_sizing_never_reuses_a_uid_for_other_content(small):
    two = list(generate_studies(series_per_study=2, instances_per_series=2))
    by_uid = {ds.SOPInstanceUID: to_bytes(ds) for ds in _all(small)}
    shared = [ds for ds in _all(two) if ds.SOPInstanceUID in by_uid]
    assert shared  # the first series is the same kind in both
    for ds in shared:
        assert by_uid[ds.SOPInstanceUID] == to_bytes(ds)


def test_roster_has_the_isolation_edge_cases():
    roster = sample_patients()
    keys = {(p.patient_id, p.issuer) for p in roster}
    assert len(keys) == len(roster)
    ids = {p.patient_id for p in roster}
    assert {"12", "123", "abc", "ABC"} <= ids
    assert {p.issuer for p in roster if p.patient_id == "P-SAME"} == {"HOSP-A", "HOSP-B"}
    assert any(not p.name.isascii() for p in roster)
    assert any(p.issuer is None for p in roster)
    assert sum(p.issuer == "HOSP-A" for p in roster) >= 3


def test_roster_covers_modalities_and_charsets(small):
    modalities = {m for s, _ in small for m in s.modalities}
    assert {"CT", "MR", "US", "CR", "SR"} <= modalities
    for study, dss in small:
        expected = "ISO_IR 100" if study.patient.name.isascii() else "ISO_IR 192"
        assert {ds.SpecificCharacterSet for ds in dss} == {expected}
    offsets = [dss[0].get("TimezoneOffsetFromUTC") for _, dss in small]
    assert any(o is None for o in offsets) and any(o is not None for o in offsets)


def test_every_dataset_round_trips(small):
    for study, dss in small:
        assert study.instance_count == len(dss)
        assert study.series_count == len({ds.SeriesInstanceUID for ds in dss})
        for ds in dss:
            back = pydicom.dcmread(io.BytesIO(to_bytes(ds)))
            assert back.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
            assert back.SOPInstanceUID == ds.SOPInstanceUID
            assert back.PatientName == ds.PatientName
            assert back.PatientID == study.patient.patient_id
            assert back.get("IssuerOfPatientID") == study.patient.issuer
            assert back.AccessionNumber == study.accession
            assert back.IssuerOfAccessionNumberSequence[0].LocalNamespaceEntityID
            assert back.StudyInstanceUID == study.study_uid


def test_pixel_data_shapes(small):
    expected = {
        "CT": ((512, 512), "int16"),
        "MR": ((256, 256), "uint16"),
        "CR": ((1024, 1024), "uint16"),
    }
    seen = Counter()
    for ds in _all(small):
        back = pydicom.dcmread(io.BytesIO(to_bytes(ds)))
        if back.Modality == "SR":
            assert "PixelData" not in back
            assert back.ConceptNameCodeSequence[0].CodeValue
            assert back.ContentSequence[0].TextValue
        elif back.Modality == "US":
            assert back.pixel_array.shape in {(480, 640), (480, 640, 3)}
        else:
            shape, dtype = expected[back.Modality]
            assert back.pixel_array.shape == shape
            assert back.pixel_array.dtype == dtype
        seen[back.Modality] += 1
    assert seen["CT"] and seen["MR"]


def test_uids_are_valid_and_unique(small):
    sop_uids = []
    for ds in _all(small):
        for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
            assert len(uid) <= 64 and _UID_RE.match(uid), uid
        assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID
        sop_uids.append(ds.SOPInstanceUID)
    assert len(sop_uids) == len(set(sop_uids))


def test_laterality_on_paired_body_parts(small):
    for ds in _all(small):
        if ds.BodyPartExamined in ("KNEE", "BREAST") and ds.Modality != "SR":
            assert ds.Laterality in ("R", "L")
        if ds.BodyPartExamined in ("CHEST", "HEAD", "ABDOMEN"):
            assert "Laterality" not in ds


def test_sizes_follow_parameters():
    patients = [SamplePatient("T-1", "HOSP-A", "Test^One", "19800101", "F")]
    studies = list(
        generate_studies(
            studies_per_patient=2, series_per_study=1, instances_per_series=3, patients=patients
        )
    )
    assert len(studies) == 2
    assert [len(dss) for _, dss in studies] == [3, 3]


@pytest.mark.parametrize("target", [0, 1, 37])
def test_corpus_honours_target_instances(target):
    studies = list(generate_corpus(target_instances=target))
    assert sum(len(dss) for _, dss in studies) == target
    assert sum(s.instance_count for s, _ in studies) == target


def test_corpus_starts_with_the_roster_then_generated_patients():
    studies = list(generate_corpus(target_instances=120))
    roster = sample_patients()
    assert [s.patient for s, _ in studies] == roster[: len(studies)]
    generated = [_corpus_patient(0, n) for n in range(1, 200)]
    assert len({p.patient_id for p in generated}) == len(generated)
    assert {p.issuer for p in generated} == {"HOSP-A", "HOSP-B", None}
    assert not {(p.issuer, p.patient_id) for p in generated} & {
        (p.issuer, p.patient_id) for p in roster
    }


def test_write_files(tmp_path):
    study, dss = next(iter(generate_studies(series_per_study=2, instances_per_series=1)))
    paths = write_files(dss, tmp_path)
    assert len(paths) == len(dss) == 2
    for path, ds in zip(paths, dss, strict=True):
        assert path.read_bytes() == to_bytes(ds)
        assert path.parent.parent.name == study.study_uid
