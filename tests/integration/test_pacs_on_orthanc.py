"""The PACS adapter against the real Orthanc 1.10: facts the status rule depends on."""

from __future__ import annotations

import pytest
import requests

from sidecar.adapters.dicomweb import DicomwebPacs
from sidecar.core import qido
from sidecar.settings import load_settings
from tests.integration.conftest import orthanc_study_uids

pytestmark = pytest.mark.stack


def test_a_study_still_filed_under_the_patient_is_never_withdrawn(stack, sample_data):
    """find_study asks for IssuerOfPatientID (0010,0021), which Orthanc returns at study level
    only when asked; without it every study of a patient with an issuer looked refiled."""
    pacs = stack.pacs["main"]
    uids = orthanc_study_uids(pacs, "P-1001", "HOSP-A")
    assert uids
    settings = load_settings(stack.env())
    client = DicomwebPacs(settings.pacs["main"], settings.qido)
    try:
        for uid in uids:
            (record,) = client.find_study(uid)
            assert qido.is_exact_patient(record, "P-1001", "HOSP-A"), record
    finally:
        client.close()
    # the fact behind it: asked by StudyInstanceUID alone, Orthanc leaves the issuer out
    uid = next(iter(uids))
    plain = requests.get(
        f"{pacs.dicomweb_url}/studies",
        params={"0020000D": uid},
        auth=pacs.auth,
        headers={"Accept": "application/dicom+json"},
        timeout=30,
    ).json()
    assert qido.first_value(plain[0], qido.ISSUER_OF_PATIENT_ID) is None
