"""A PACS patient (PatientID + IssuerOfPatientID of a study) -> the FHIR Patients it is.

The inverse of ``sidecar.core.identity.patient_keys``: one FHIR search over every identifier
system this PACS maps for that issuer (padded values included), then the same exact rule
the use case applies. No Patient: nothing, unless the PACS opts in to creating one from the
DICOM demographics (the backfill's rule: ``SIDECAR_PACS_<NAME>_CREATE_PATIENTS``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sidecar.core import identity, qido
from sidecar.core.fhir_values import identifier_token
from sidecar.ports import FhirServer
from sidecar.settings import PacsSettings
from sidecar.usecases.backfill import (
    DicomPatient,
    create_patient_if_none_exist,
    identifier_mapping_for,
    patient_resource,
)

log = logging.getLogger(__name__)
LIMIT = 20


def patients_of(fhir: FhirServer, pacs: PacsSettings, record: Mapping[str, Any]) -> list[str]:
    """Ids of the FHIR Patients whose identifiers name the patient of this study record."""
    patient_id = qido.first_value(record, qido.PATIENT_ID)
    issuer = qido.first_value(record, qido.ISSUER_OF_PATIENT_ID)
    try:
        patient_id = qido.check_match_value(patient_id)
    except qido.RefusedValue:
        return []
    mappings = [m for m in pacs.patient_identifiers if m.issuer is None or m.issuer == issuer]
    tokens = list(
        dict.fromkeys(
            identifier_token(m.system, v)
            for m in mappings
            for v in (patient_id, f"{patient_id} ", f" {patient_id}")
        )
    )
    if not tokens:
        return []
    found = fhir.search(
        "Patient",
        {"identifier": ",".join(tokens), "_elements": "identifier,link,active"},
        limit=LIMIT,
    )
    ids = []
    for patient in found:
        keys, _ = identity.patient_keys(patient, [pacs])
        if any(k.patient_id == patient_id and k.issuer in (None, issuer) for k in keys):
            ids.append(str(patient["id"]))
    if not ids and pacs.create_patients:
        created = _create(fhir, pacs, record, patient_id, issuer)
        ids = [created] if created else []
    return ids


def _create(
    fhir: FhirServer,
    pacs: PacsSettings,
    record: Mapping[str, Any],
    patient_id: str,
    issuer: str | None,
) -> str | None:
    mapping = identifier_mapping_for(pacs, issuer)
    if mapping is None:
        return None
    who = DicomPatient(patient_id, issuer)
    resource = patient_resource(dict(record), mapping, who)
    new_id, created = create_patient_if_none_exist(fhir, resource, mapping.system, patient_id)
    if created:
        log.info("Patient created from a PACS study", extra={"patient_id": new_id})
    return new_id
