"""Which FHIR Patients are a PACS patient, asked in one place; creating one when allowed.

The fetch (another Patient claiming the same PACS patient is a conflict), the triggers (a
PACS study -> the Patients to sync) and the backfill (a PACS patient -> its Patient) all
search with :func:`sidecar.core.identity.claim_tokens` and decide with the rules of
:mod:`sidecar.core.identity` (merged-away Patients claim nothing); the search, its
``_elements`` and its page size live here only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from sidecar.core import identity
from sidecar.core.fhir_values import identifier_token
from sidecar.core.identity import DicomPatient, PatientKey
from sidecar.core.outcome import FetchError
from sidecar.ports import FhirServer, Resource
from sidecar.settings import PacsSettings

log = logging.getLogger(__name__)

#: Patients read per claim search: more than this many claimants is reported, not listed.
SEARCH_LIMIT = 20
ELEMENTS = "identifier,link,active"


def candidates(
    fhir: FhirServer,
    keys: Iterable[PatientKey],
    pacs: Iterable[PacsSettings],
    *,
    limit: int = SEARCH_LIMIT,
) -> list[Resource]:
    """Every Patient whose identifiers may name one of these PACS patients (one search)."""
    tokens = identity.claim_tokens(keys, pacs)
    if not tokens:
        return []
    params = {"identifier": ",".join(tokens), "_elements": ELEMENTS}
    return fhir.search("Patient", params, limit=limit)


def claimants(
    fhir: FhirServer,
    patient_id: str,
    keys: list[PatientKey],
    pacs: Iterable[PacsSettings],
    *,
    limit: int,
) -> dict[str, list[PatientKey]]:
    """The other Patients (by id) that claim one of this Patient's PACS patients."""
    pacs_list = list(pacs)
    found = candidates(fhir, keys, pacs_list, limit=limit)
    return identity.claimants(patient_id, keys, found, pacs_list)


def patients_of(
    fhir: FhirServer,
    pacs: PacsSettings,
    record: Mapping[str, Any],
    *,
    create: bool | None = None,
) -> list[str]:
    """Ids of the Patients whose fetch takes this study record's studies; with ``create``
    (default: the PACS's ``SIDECAR_PACS_<NAME>_CREATE_PATIENTS``) and none found, a new
    Patient from the record's demographics."""
    who = DicomPatient.of(record)
    if who is None:
        return []
    found = candidates(fhir, [PatientKey(pacs.name, None, who.patient_id, who.issuer)], [pacs])
    ids = identity.holders(pacs, who, found)
    if not ids and (pacs.create_patients if create is None else create):
        created = create_patient(fhir, pacs, who, dict(record))
        ids = [created] if created else []
    return ids


def create_patient(
    fhir: FhirServer, pacs: PacsSettings, who: DicomPatient, record: Resource | None
) -> str | None:
    """A Patient for this PACS patient from the DICOM demographics, by conditional create
    (``If-None-Exist: identifier=system|value``: idempotent across kills and replicas).
    None when no identifier system of the PACS maps ``who``'s issuer."""
    mapping = identity.identifier_mapping_for(pacs, who.issuer)
    if mapping is None:
        return None
    resource = identity.patient_resource(record, mapping, who)
    token = identifier_token(mapping.system, who.patient_id)
    patient_id, created = fhir.create_if_none_exist(resource, f"identifier={token}")
    if not patient_id:  # a server may not say where the match is
        found = fhir.search("Patient", {"identifier": token}, limit=2)
        if len(found) != 1:
            raise FetchError(f"a conditional create of a Patient left {len(found)} matches")
        patient_id = str(found[0]["id"])
    if created:
        log.info("Patient created from a PACS study", extra={"patient_id": patient_id})
    return patient_id
