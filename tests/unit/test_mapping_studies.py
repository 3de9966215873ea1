"""map_studies: merging, detail levels, determinism, bad data, ids, Endpoint, Patient."""

from __future__ import annotations

import io
import json
import random

import pydicom
import pytest
from dicom_json import code_item, el, record
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from sidecar.core.mapping import (
    Detail,
    assemble,
    build_endpoint,
    build_patient,
    extract_records,
    imaging_study_id,
    map_studies,
    patient_key,
    study_identifier,
    validate_r4,
)
from sidecar.core.mapping.source import as_record

STUDY = "1.2.826.0.1.3680043.8.498.1"
SERIES_A = "1.2.826.0.1.3680043.8.498.1.1"
SERIES_B = "1.2.826.0.1.3680043.8.498.1.2"
SUBJECT = {"reference": "Patient/p1"}
CT = "1.2.840.10008.5.1.4.1.1.2"


def study_row(*elements, **extra):
    values = {
        "StudyInstanceUID": STUDY,
        "StudyDate": "20240115",
        "StudyTime": "101500",
        "AccessionNumber": "ACC1",
        "ModalitiesInStudy": ["CT", "SR"],
        "StudyDescription": "CT Thorax",
        "NumberOfStudyRelatedSeries": "2",
        "NumberOfStudyRelatedInstances": "3",
        "PatientID": "PID1",
    }
    return record(*elements, **{**values, **extra})


def instance(series, sop, number, modality="CT", **extra):
    values = {
        "StudyInstanceUID": STUDY,
        "SeriesInstanceUID": series,
        "SOPInstanceUID": sop,
        "SOPClassUID": CT,
        "Modality": modality,
        "SeriesNumber": str(1 if series == SERIES_A else 2),
        "InstanceNumber": str(number),
    }
    return record(**{**values, **extra})


def instances():
    return [
        instance(SERIES_B, f"{SERIES_B}.1", 1),
        instance(SERIES_A, f"{SERIES_A}.10", 10),
        instance(SERIES_A, f"{SERIES_A}.2", 2),
    ]


def dumps(result):
    return json.dumps({"s": result.studies, "i": result.issues}, sort_keys=True)


def test_partial_merge_study_row_plus_instance_rows():
    result = map_studies([study_row(), *instances()], subject=SUBJECT)
    (study,) = result.studies
    validate_r4(study)
    assert study["numberOfSeries"] == 2  # from the study row
    assert study["numberOfInstances"] == 3
    assert study["modality"] == [
        {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}
    ]  # union of series Modality wins over ModalitiesInStudy
    assert study["identifier"][0] == study_identifier(STUDY)
    assert study["identifier"][1]["value"] == "ACC1"
    assert study["identifier"][1]["type"]["coding"][0]["code"] == "ACSN"
    a, b = study["series"]
    assert (a["uid"], b["uid"]) == (SERIES_A, SERIES_B)
    assert [i["number"] for i in a["instance"]] == [2, 10]  # numeric, not text order
    assert a["numberOfInstances"] == 2


def test_modalities_in_study_used_when_no_series_known():
    (study,) = map_studies([study_row()], subject=SUBJECT).studies
    assert [m["code"] for m in study["modality"]] == ["CT", "SR"]
    assert "series" not in study


def test_any_order_gives_byte_identical_output():
    records = [study_row(), *instances()]
    expected = dumps(map_studies(records, subject=SUBJECT))
    rng = random.Random(7)
    for _ in range(10):
        rng.shuffle(records)
        assert dumps(map_studies(records, subject=SUBJECT)) == expected


def test_facts_extracted_in_chunks_assemble_to_the_same_output():
    """The use case extracts each study's records as the PACS answers for it (stage 1) and
    assembles once (stage 2): any chunking and any order give map_studies' bytes, issues
    included (a record that is no DICOM adds one)."""
    from sidecar.samples.generator import generate_studies

    records = [study_row(), *instances(), "not DICOM"]
    for _study, datasets in list(generate_studies())[:3]:
        records += [as_record(ds) for ds in datasets]
    expected = dumps(map_studies(records, subject=SUBJECT, timezone="Europe/Berlin"))
    rng = random.Random(11)
    for _ in range(5):
        rng.shuffle(records)
        cut = sorted(rng.sample(range(1, len(records)), 4))
        chunks = [records[a:b] for a, b in zip([0, *cut], [*cut, len(records)], strict=True)]
        facts = [f for chunk in chunks for f in extract_records(chunk, "Europe/Berlin")]
        rng.shuffle(facts)
        assert dumps(assemble(facts, subject=SUBJECT)) == expected


def test_detail_levels():
    records = [study_row(), *instances()]
    (s,) = map_studies(records, subject=SUBJECT, detail=Detail.STUDY).studies
    assert "series" not in s and s["numberOfInstances"] == 3
    (s,) = map_studies(records, subject=SUBJECT, detail=Detail.SERIES).studies
    assert [x["uid"] for x in s["series"]] == [SERIES_A, SERIES_B]
    assert all("instance" not in x for x in s["series"])
    assert s["series"][0]["numberOfInstances"] == 2
    (s,) = map_studies(records, subject=SUBJECT, detail="instance").studies
    assert len(s["series"][0]["instance"]) == 2


def test_all_mapping_rows():
    rows = [
        record(
            el(
                "IssuerOfAccessionNumberSequence",
                record(
                    LocalNamespaceEntityID="RIS",
                    UniversalEntityID="1.2.3.4.5",
                    UniversalEntityIDType="ISO",
                ),
                vr="SQ",
            ),
            el(
                "ProcedureCodeSequence",
                code_item("24627-2", "LN", "CT Chest"),
                code_item("X1", "99LOCAL", "Local"),
                vr="SQ",
            ),
            el("AnatomicRegionSequence", code_item("39607008", "SCT", "Lung"), vr="SQ"),
            el("ReferringPhysicianName", "Smith^Anna^^Dr."),
            el("NameOfPhysiciansReadingStudy", "Reader^One", "Reader^Two"),
            el("PerformingPhysicianName", "Tech^Tom"),
            StudyInstanceUID=STUDY,
            SeriesInstanceUID=SERIES_A,
            SOPInstanceUID=SERIES_A + ".1",
            SOPClassUID="1.2.840.10008.5.1.4.1.1.104.1",
            Modality="DOC",
            SeriesNumber=3,
            InstanceNumber=1,
            AccessionNumber="ACC9",
            StudyDate="20240115",
            StudyTime="101500",
            SeriesDate="20240115",
            SeriesTime="102000",
            TimezoneOffsetFromUTC="+0100",
            StudyDescription="Chest",
            SeriesDescription="Report",
            ReasonForTheRequestedProcedure="Cough",
            Laterality="L",
            DocumentTitle="Referral letter",
            BodyPartExamined="CHEST",
        )
    ]
    endpoint = {"reference": "Endpoint/pacs-main"}
    (s,) = map_studies(rows, subject=SUBJECT, endpoint=endpoint).studies
    validate_r4(s)
    assert s["identifier"][1]["system"] == "urn:oid:1.2.3.4.5"
    assert s["identifier"][1]["assigner"] == {"display": "RIS"}
    assert s["started"] == "2024-01-15T10:15:00+01:00"
    assert s["referrer"] == {"display": "Dr. Anna Smith"}
    assert s["interpreter"] == [{"display": "One Reader"}, {"display": "Two Reader"}]
    assert s["procedureCode"][0]["coding"][0]["system"] == "http://loinc.org"
    assert s["procedureCode"][1] == {"text": "Local (99LOCAL X1)"}
    assert s["reasonCode"] == [{"text": "Cough"}]
    assert s["description"] == "Chest"
    assert s["endpoint"] == [endpoint] and s["subject"] == SUBJECT
    series = s["series"][0]
    # AnatomicRegionSequence (coded) is preferred over BodyPartExamined
    assert series["bodySite"] == {
        "system": "http://snomed.info/sct",
        "code": "39607008",
        "display": "Lung",
    }
    assert series["laterality"]["code"] == "7771000"
    assert series["started"] == "2024-01-15T10:20:00+01:00"
    assert series["performer"] == [{"actor": {"display": "Tom Tech"}}]
    assert series["number"] == 3 and series["description"] == "Report"
    inst = series["instance"][0]
    assert inst["title"] == "Referral letter"
    assert inst["sopClass"]["display"] == "Encapsulated PDF Storage"


def test_accession_system_from_argument_when_no_issuer():
    (s,) = map_studies([study_row()], subject=SUBJECT, accession_system="urn:oid:9.9").studies
    assert s["identifier"][1]["system"] == "urn:oid:9.9"


def diagnostics(result):
    return "\n".join(i["diagnostics"] for i in result.issues)


def test_bad_data_is_skipped_with_warnings_naming_uid_and_tag():
    long_uid = "1." + "2" * 70
    records = [
        record(StudyDate="20240101"),  # no StudyInstanceUID
        record(StudyInstanceUID=long_uid),
        record(StudyInstanceUID="1.2.x"),
        record(StudyInstanceUID=[STUDY, "1.2.4"]),  # multi-valued UID
        record(StudyInstanceUID=STUDY, SOPInstanceUID="1.2.9", SOPClassUID=CT),  # no series
        record(StudyInstanceUID=STUDY, SeriesInstanceUID=SERIES_A, SOPClassUID=CT),  # no SOP
        instance(SERIES_A, SERIES_A + ".5", "abc"),  # bad InstanceNumber
        record(
            StudyInstanceUID=STUDY,
            SeriesInstanceUID=SERIES_A,
            Modality="CT",
            SeriesNumber="-4",
            StudyDate="20241341",
            Laterality="X",
            PatientName="Secret^Name",
        ),
        record(StudyInstanceUID=STUDY, SeriesInstanceUID=SERIES_B),  # no Modality
        record(el("StudyDescription", "a", "b"), StudyInstanceUID=STUDY),
        record(
            el("SeriesNumber", {"oops": 1}, vr="IS"),
            StudyInstanceUID=STUDY,
            SeriesInstanceUID=SERIES_A,
        ),
        "not a record",
    ]
    result = map_studies(records, subject=SUBJECT)
    (study,) = result.studies
    validate_r4(study)
    text = diagnostics(result)
    assert "record without UIDs: record skipped, missing StudyInstanceUID (0020,000D)" in text
    assert f"study {long_uid}" not in [s["id"] for s in result.studies]
    assert "record skipped, invalid StudyInstanceUID (0020,000D)" in text
    assert "instance skipped, missing SeriesInstanceUID (0020,000E)" in text
    assert "instance skipped, missing SOPInstanceUID (0008,0018)" in text
    assert f"instance {SERIES_A}.5: invalid value ignored: InstanceNumber (0020,0013)" in text
    assert "SeriesNumber (0020,0011)" in text
    assert "StudyDate (0008,0020)" in text
    assert "Laterality (0020,0060)" in text
    assert f"series {SERIES_B}: series skipped, missing Modality (0008,0060)" in text
    assert "several values in single-valued; first used: StudyDescription" in text
    assert "not DICOM JSON or a Dataset" in text
    assert "Secret" not in text and "Name" not in text.replace("Number", "")
    assert all(i["severity"] == "warning" for i in result.issues)
    inst = study["series"][0]["instance"][0]
    assert "number" not in inst and study["series"][0]["uid"] == SERIES_A
    assert study["description"] == "a"


def test_conflicting_values_are_resolved_by_frequency_and_reported():
    rows = [
        instance(SERIES_A, f"{SERIES_A}.{n}", n, SeriesDescription=d)
        for n, d in ((1, "Axial"), (2, "Axial"), (3, "Coronal"))
    ]
    result = map_studies(rows, subject=SUBJECT)
    assert result.studies[0]["series"][0]["description"] == "Axial"
    assert "records disagree on description" in diagnostics(result)


def test_image_laterality_used_when_series_has_none():
    rows = [
        instance(SERIES_A, f"{SERIES_A}.{n}", n, ImageLaterality=side)
        for n, side in ((1, "R"), (2, "R"))
    ]
    assert map_studies(rows).studies[0]["series"][0]["laterality"]["code"] == "24028007"


def test_sr_title_from_concept_name():
    row = instance(SERIES_A, SERIES_A + ".1", 1, modality="SR")
    key, elem = el(
        "ConceptNameCodeSequence", code_item("18748-4", "LN", "Diagnostic imaging report"), vr="SQ"
    )
    row[key] = elem
    inst = map_studies([row]).studies[0]["series"][0]["instance"][0]
    assert inst["title"] == "Diagnostic imaging report"


def test_study_level_json_numbers_and_strings_both_accepted():
    row = study_row()
    row["00201206"] = {"vr": "IS", "Value": [2]}
    assert map_studies([row]).studies[0]["numberOfSeries"] == 2


def test_imaging_study_id():
    assert imaging_study_id(STUDY) == STUDY
    for odd in ("12345", "1." + "2" * 70, "1.2.abc", "ÄÖ"):
        value = imaging_study_id(odd)
        assert value.startswith("dcm-") and len(value) <= 64
        assert value == imaging_study_id(odd)
        assert all(c.isalnum() or c in "-." for c in value)
    assert imaging_study_id("12345") != imaging_study_id("12346")


def test_endpoint_is_valid_r4():
    endpoint = build_endpoint(
        endpoint_id="pacs-main", wado_root="http://pacs/dicom-web/", name="Main PACS"
    )
    validate_r4(endpoint)
    assert endpoint["address"] == "http://pacs/dicom-web"
    assert endpoint["connectionType"]["code"] == "dicom-wado-rs"
    assert endpoint["payloadMimeType"] == ["application/dicom"]
    assert endpoint["status"] == "active" and endpoint["id"] == "pacs-main"


def _roundtrip(ds: Dataset) -> Dataset:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CT
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


@pytest.mark.parametrize("charset", ["ISO_IR 192", ["", "ISO 2022 IR 87"]])
def test_non_ascii_names_through_real_encodings(charset):
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds.ReferringPhysicianName = "Yamada^Hanako=山田^花子"
    ds.PatientID = "JP1"
    ds.StudyInstanceUID = STUDY
    ds.StudyDescription = "胸部CT" if charset == "ISO_IR 192" else "Chest CT"
    ds = _roundtrip(ds)
    (study,) = map_studies([ds], subject=SUBJECT).studies
    assert study["referrer"] == {"display": "Hanako Yamada (山田 花子)"}
    patient = build_patient(ds)
    validate_r4(patient)
    assert patient["name"][0]["family"] == "Yamada"
    assert patient["name"][1]["text"] == "山田 太郎"
    assert patient_key(ds) == ("JP1", None)


def test_unknown_character_set_is_reported_not_fatal():
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 999"
    ds.StudyInstanceUID = STUDY
    ds.StudyDescription = "x"
    result = map_studies([_roundtrip(ds)])
    assert result.studies and "SpecificCharacterSet (0008,0005)" in diagnostics(result)


def test_patient_from_json():
    row = record(
        PatientID="PID1 ",
        IssuerOfPatientID="1.2.3.4",
        PatientName="Müller^Zoë",
        PatientBirthDate="19800230",
        PatientSex="F",
    )
    patient = build_patient(row)
    validate_r4(patient)
    assert patient["identifier"] == [{"value": "PID1", "system": "urn:oid:1.2.3.4"}]
    assert patient["name"][0]["text"] == "Zoë Müller"
    assert patient["gender"] == "female" and "birthDate" not in patient  # invalid date
    assert patient_key(row) == ("PID1", "1.2.3.4")
    assert patient_key({}) == (None, None)


def test_pydicom_dataset_and_json_give_the_same_study():
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    as_json = ds.to_json_dict()
    assert dumps(map_studies([ds], subject=SUBJECT)) == dumps(
        map_studies([as_json], subject=SUBJECT)
    )


def _issuer_item(local):
    return el("IssuerOfAccessionNumberSequence", record(LocalNamespaceEntityID=local), vr="SQ")


def test_a_missing_issuer_is_not_a_different_one():
    # Orthanc's study row carries IssuerOfPatientID (0010,0021), its instance rows do not;
    # likewise a PACS may send IssuerOfAccessionNumberSequence (0008,0051) at one level only.
    rows = [
        study_row(_issuer_item("RIS"), IssuerOfPatientID="HOSP-A"),
        *instances(),
        instance(SERIES_A, f"{SERIES_A}.3", 3, PatientID="PID1", AccessionNumber="ACC1"),
    ]
    result = map_studies(rows, subject=SUBJECT)
    assert result.issues == []
    (study,) = result.studies
    assert study["identifier"][1]["assigner"] == {"display": "RIS"}  # the complete value


def test_patient_keys_keep_the_issuer_of_the_one_record_that_has_it():
    from sidecar.core.mapping import StudyAssembler, extract

    assembler = StudyAssembler()
    for row in [study_row(IssuerOfPatientID="HOSP-A")] + [
        instance(SERIES_A, f"{SERIES_A}.{n}", n, PatientID="PID1") for n in range(1, 5)
    ]:
        assembler.add(extract(as_record(row)))
    assert assembler.patient_keys() == {STUDY: ("PID1", "HOSP-A")}


@pytest.mark.parametrize(
    ("second", "tag"),
    [
        ({"PatientID": "PID2", "IssuerOfPatientID": "HOSP-A"}, "PatientID (0010,0020)"),
        ({"PatientID": "PID2"}, "PatientID (0010,0020)"),
        ({"PatientID": "PID1", "IssuerOfPatientID": "HOSP-B"}, "IssuerOfPatientID (0010,0021)"),
    ],
)
def test_records_that_really_disagree_on_the_patient_are_reported(second, tag):
    rows = [study_row(IssuerOfPatientID="HOSP-A"), record(StudyInstanceUID=STUDY, **second)]
    text = diagnostics(map_studies(rows, subject=SUBJECT))
    assert f"study {STUDY}: records disagree on patient" in text
    assert text.endswith(f"most frequent value used: {tag}")


def test_records_that_disagree_on_the_accession_issuer_are_reported():
    rows = [study_row(_issuer_item("RIS-A")), study_row(_issuer_item("RIS-B")), study_row()]
    text = diagnostics(map_studies(rows, subject=SUBJECT))
    assert "records disagree on accession issuer" in text
    assert "IssuerOfAccessionNumberSequence (0008,0051)" in text


def test_values_that_are_there_but_unreadable_are_named():
    row = instance(SERIES_A, f"{SERIES_A}.1", 1)
    row["00081030"] = {"vr": "LO", "BulkDataURI": "http://pacs/bulk/1"}
    row["0008103E"] = {"vr": "LO", "InlineBinary": "QUJD"}
    row["00200013"] = {"vr": "IS", "Value": []}  # Orthanc: an IS it could not parse
    row["00081090"] = {"vr": "LO", "Value": []}  # not read by the mapping: no issue
    text = diagnostics(map_studies([row], subject=SUBJECT))
    assert (
        f"study {STUDY}: value ignored: StudyDescription (0008,1030): sent as BulkDataURI" in text
    )
    assert "value ignored: SeriesDescription (0008,103E): sent as InlineBinary" in text
    assert (
        f"instance {SERIES_A}.1: value ignored: InstanceNumber (0020,0013): "
        "the PACS sent an empty Value array" in text
    )
    assert len(text.splitlines()) == 3


def test_an_empty_attribute_is_no_issue():
    row = instance(SERIES_A, f"{SERIES_A}.1", 1)
    row["00200013"] = {"vr": "IS"}  # PS3.18 F.2.5: present, no value
    row["0008103E"] = {"vr": "LO", "Value": []}
    row["00081030"] = {"vr": "LO", "Value": ["  "]}
    assert map_studies([row], subject=SUBJECT).issues == []


def test_study_attributes_of_instance_rows_are_named_once_for_the_study():
    rows = [instance(SERIES_A, f"{SERIES_A}.{n}", n, StudyDate="20241341") for n in range(5)]
    result = map_studies(rows, subject=SUBJECT)
    assert [i["diagnostics"] for i in result.issues] == [
        f"study {STUDY}: invalid value ignored: StudyDate (0008,0020): "
        "not a date (DA YYYYMMDD, PS3.5 6.2)"
    ]


@pytest.mark.parametrize(("raw", "code"), [("ct", "CT"), (" mr ", "MR"), ("Us", "US")])
def test_lower_case_modality_is_normalised_and_named(raw, code):
    rows = [study_row(ModalitiesInStudy=[raw]), instance(SERIES_A, SERIES_A + ".1", 1, raw)]
    result = map_studies(rows, subject=SUBJECT)
    (study,) = result.studies
    assert study["series"][0]["modality"]["code"] == code
    assert study["modality"] == [
        {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": code}
    ]
    text = diagnostics(result)
    assert f"series {SERIES_A}: value normalised to upper case: Modality (0008,0060)" in text
    assert f"study {STUDY}: value normalised to upper case: ModalitiesInStudy (0008,0061)" in text


def test_an_invalid_modality_is_not_called_missing():
    rows = [instance(SERIES_A, f"{SERIES_A}.{n}", n, "C T") for n in (1, 2)]
    rows.append(instance(SERIES_B, f"{SERIES_B}.1", 1, "C T"))
    rows.append(instance(SERIES_B, f"{SERIES_B}.2", 2, "CT"))
    result = map_studies(rows, subject=SUBJECT)
    text = diagnostics(result)
    assert (
        f"series {SERIES_A}: series and its 2 instances skipped, invalid Modality (0008,0060): "
        "not a code string (CS, PS3.5 6.2)" in text
    )
    assert "missing Modality" not in text
    # one record's value discarded, the series kept with the others'
    assert (
        f"series {SERIES_B}: invalid value ignored: Modality (0008,0060): "
        "the other records' value used" in text
    )
    assert [s["uid"] for s in result.studies[0]["series"]] == [SERIES_B]


def test_an_invalid_sop_class_is_not_called_missing():
    rows = [
        instance(SERIES_A, f"{SERIES_A}.1", 1, SOPClassUID="1.2.abc"),
        instance(SERIES_A, f"{SERIES_A}.2", 2, SOPClassUID="1.2.abc"),
        instance(SERIES_A, f"{SERIES_A}.2", 2),
    ]
    result = map_studies(rows, subject=SUBJECT)
    text = diagnostics(result)
    assert (
        f"instance {SERIES_A}.1: instance skipped, invalid SOPClassUID (0008,0016): "
        "not a UID (PS3.5 9.1)" in text
    )
    assert f"instance {SERIES_A}.2: invalid value ignored: SOPClassUID (0008,0016)" in text
    assert [i["uid"] for i in result.studies[0]["series"][0]["instance"]] == [f"{SERIES_A}.2"]


def test_removed_control_characters_are_named_but_padding_is_not():
    rows = [
        study_row(StudyDescription="Thorax\x1b$B CT"),
        instance(SERIES_A, SERIES_A + ".1", 1, SeriesDescription="Axial\x00\x00"),
    ]
    result = map_studies(rows, subject=SUBJECT)
    (study,) = result.studies
    assert study["description"] == "Thorax$B CT"
    assert study["series"][0]["description"] == "Axial"
    assert [i["diagnostics"] for i in result.issues] == [
        f"study {STUDY}: control characters removed from StudyDescription (0008,1030): "
        "FHIR strings cannot carry them (an ESC is an undecoded ISO 2022 escape)"
    ]


def test_an_unusable_universal_entity_id_is_named_and_the_local_one_kept():
    issuer = record(
        LocalNamespaceEntityID="RIS", UniversalEntityID="ris.example", UniversalEntityIDType="DNS"
    )
    row = study_row(el("IssuerOfAccessionNumberSequence", issuer, vr="SQ"))
    result = map_studies([row], subject=SUBJECT)
    accession = result.studies[0]["identifier"][1]
    assert accession["assigner"] == {"display": "RIS"} and "system" not in accession
    assert diagnostics(result).startswith(
        f"study {STUDY}: UniversalEntityID (0040,0032) ignored in "
        "IssuerOfAccessionNumberSequence (0008,0051): not an ISO OID, UUID or URI"
    )


def test_an_unknown_character_set_label_on_dicom_json_is_no_issue():
    # DICOM JSON is UTF-8 whatever the label (PS3.18 F.2): nothing was decoded with it.
    row = study_row(SpecificCharacterSet="ISO_IR 999", StudyDescription="Thorax")
    assert map_studies([row], subject=SUBJECT).issues == []


def test_every_value_discarded_by_disagreeing_records_is_named():
    rows = [
        study_row(el("ReferringPhysicianName", "Smith^Anna")),
        study_row(el("ReferringPhysicianName", "Smith^Anna")),
        study_row(el("ReferringPhysicianName", "Jones^Bob")),
        instance(SERIES_A, f"{SERIES_A}.1", 1, SeriesDate="20240115", SeriesTime="101500"),
        instance(SERIES_A, f"{SERIES_A}.2", 2, SeriesDate="20240115", SeriesTime="111500"),
        instance(SERIES_A, f"{SERIES_A}.1", 1, DocumentTitle="One"),
        instance(SERIES_A, f"{SERIES_A}.1", 1, DocumentTitle="Two"),
    ]
    result = map_studies(rows, subject=SUBJECT, timezone="Europe/Zurich")
    text = diagnostics(result)
    assert f"study {STUDY}: records disagree on referrer, most frequent value used: " in text
    assert "ReferringPhysicianName (0008,0090)" in text
    assert f"series {SERIES_A}: records disagree on start time" in text
    assert "SeriesDate (0008,0021)" in text
    assert f"instance {SERIES_A}.1: records disagree on title" in text
    assert "Jones" not in text and "Smith" not in text
    assert result.studies[0]["referrer"] == {"display": "Anna Smith"}


def test_a_better_zoned_start_time_is_no_disagreement():
    rows = [
        study_row(TimezoneOffsetFromUTC="+0100"),  # zone from the DICOM data
        instance(SERIES_A, f"{SERIES_A}.1", 1, StudyDate="20240115", StudyTime="101500"),
        instance(SERIES_A, f"{SERIES_A}.2", 2, StudyDate="20240115"),  # date only
    ]
    result = map_studies(rows, subject=SUBJECT, timezone="America/New_York")
    assert result.issues == []
    assert result.studies[0]["started"] == "2024-01-15T10:15:00+01:00"


def test_one_study_from_two_pacs_is_the_union_of_their_series_and_instances():
    from sidecar.core.mapping import merge_studies

    def series(uid, number, *sops):
        instances = [{"uid": s, "sopClass": {"code": "1.2"}} for s in sops]
        return {"uid": uid, "number": number, "numberOfInstances": len(sops), "instance": instances}

    main = {
        "id": "x",
        "modality": [{"system": "dcm", "code": "CT"}],
        "endpoint": [{"reference": "Endpoint/main"}],
        "numberOfSeries": 2,
        "numberOfInstances": 3,
        "series": [series("1.2", 2, "1.2.1"), series("1.1", 1, "1.1.1", "1.1.2")],
        "description": "from main",
    }
    second = {
        "id": "x",
        "modality": [{"system": "dcm", "code": "MR"}, {"system": "dcm", "code": "CT"}],
        "endpoint": [{"reference": "Endpoint/second"}],
        "numberOfSeries": 2,
        "numberOfInstances": 2,
        "series": [series("1.1", 1, "1.1.2", "1.1.3"), series("1.3", 3, "1.3.1")],
        "description": "from second",
    }
    merged = merge_studies(main, second)
    assert [s["uid"] for s in merged["series"]] == ["1.1", "1.2", "1.3"]
    assert [i["uid"] for i in merged["series"][0]["instance"]] == ["1.1.1", "1.1.2", "1.1.3"]
    assert merged["series"][0]["numberOfInstances"] == 3
    assert (merged["numberOfSeries"], merged["numberOfInstances"]) == (3, 5)
    assert [m["code"] for m in merged["modality"]] == ["CT", "MR"]
    assert [e["reference"] for e in merged["endpoint"]] == ["Endpoint/main", "Endpoint/second"]
    assert merged["description"] == "from main"  # the first PACS's, in settings order
    assert merge_studies(merged, merged) == merged  # a mirror changes nothing
    # study level only (no series): the larger counts
    shallow = merge_studies(
        {"id": "x", "numberOfSeries": 1, "numberOfInstances": 4},
        {"id": "x", "numberOfSeries": 2, "numberOfInstances": 3},
    )
    assert (shallow["numberOfSeries"], shallow["numberOfInstances"]) == (2, 4)
