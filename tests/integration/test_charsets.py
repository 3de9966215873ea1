"""Text in every character set, end to end: DICOM files in ISO_IR 192, 144, 126 and 100
stored in Orthanc (``DefaultEncoding: Utf8``), fetched through QIDO-RS, checked exactly in
the ImagingStudy on the FHIR server."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from sidecar.samples.loader import load_into_orthanc
from tests.integration.conftest import bundle_studies

pytestmark = pytest.mark.stack

CASES = {
    # SpecificCharacterSet: (StudyDescription, SeriesDescription, ReferringPhysicianName)
    "ISO_IR 192": ("頭部CT 造影", "軸位 5mm", "山田^太郎"),
    "ISO_IR 144": ("КТ головы с контрастом", "Аксиальные срезы", "Иванов^Иван"),
    "ISO_IR 126": ("Αξονική τομογραφία θώρακος", "Εγκάρσιες τομές", "Παπαδόπουλος^Γιώργος"),
    "ISO_IR 100": ("Épaule droite, contrôle", "Coupes axiales à 5 mm", "Müller^Jürgen"),
}
DISPLAY = {  # ReferringPhysicianName rendered "given family" (docs/dicom-fhir-mapping.md)
    "ISO_IR 192": "山田 太郎",  # CJK script: family name first
    "ISO_IR 144": "Иван Иванов",
    "ISO_IR 126": "Γιώργος Παπαδόπουλος",
    "ISO_IR 100": "Jürgen Müller",
}


def charset_instance(charset: str, patient_id: str) -> Dataset:
    study, series, referrer = CASES[charset]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["charset-sop", charset])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["charset-study", charset])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["charset-series", charset])
    ds.PatientID = patient_id
    ds.IssuerOfPatientID = "HOSP-A"
    ds.PatientName = referrer
    ds.StudyDate = "20240105"
    ds.Modality = "CT"
    ds.StudyDescription = study
    ds.SeriesDescription = series
    ds.ReferringPhysicianName = referrer
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    return ds


@pytest.mark.parametrize("charset", sorted(CASES))
def test_text_arrives_exactly_in_fhir(charset, stack, fhir, sidecar):
    patient_id = f"CS-{charset.split()[-1]}"
    pacs = stack.pacs["main"]
    report = load_into_orthanc(
        [charset_instance(charset, patient_id)], base_url=pacs.base_url, auth=pacs.auth
    )
    assert not report.failed, report
    fhir_id = f"t-charset-{charset.split()[-1]}"
    fhir.put_patient(fhir_id, [("HOSP-A", patient_id)])
    response = sidecar.fetch(fhir_id)
    assert response.status_code == 200, response.text
    (study,) = bundle_studies(response.json())
    description, series_description, _ = CASES[charset]
    assert study["description"] == description
    assert study["series"][0]["description"] == series_description
    assert study["referrer"]["display"] == DISPLAY[charset]
    (stored,) = fhir.studies_of(fhir_id)
    assert stored["description"] == description
    outcome = [e for e in response.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome == [], outcome
