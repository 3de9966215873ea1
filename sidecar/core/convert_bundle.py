"""The Bundle ``dicom-fhir convert`` writes, and the report of what it left out (pure).

The command (:mod:`sidecar.entry.cli.convert`) reads the files; this module decides the
entries from what the reading produced: the mapped ImagingStudies, the Patients built from
the headers, the files skipped.

Transaction bundles never invent a Patient id, so that posting one twice, or posting two
bundles of the same patient, creates nothing twice:

- ``ImagingStudy``: ``PUT ImagingStudy/{id}`` on the deterministic id of
  :func:`~sidecar.core.mapping.imaging_study_id` (idempotent).
- ``Patient``: a conditional create, ``POST Patient`` with
  ``ifNoneExist = identifier=<system>|<PatientID>``; the studies' ``subject`` references its
  ``urn:uuid:`` fullUrl, which the server replaces by the id of the Patient it found or
  created (R4 transaction processing, https://hl7.org/fhir/R4/http.html#trules). The system
  comes from the ``--patient-identifiers`` mappings (the rule of the sidecar's
  ``SIDECAR_PATIENT_IDENTIFIERS``: :func:`sidecar.core.identity.identifier_mapping_in`),
  else from an IssuerOfPatientID (0010,0021) that is itself a URI or an OID.
- A patient with neither is left out, with its studies, and named: a search on
  ``identifier=|value`` cannot tell two issuers apart (the server would merge their
  patients), and a ``PUT`` on an id made up here would create a second Patient beside the
  one the server already holds for that person.

What was left out is one R4 OperationOutcome (https://hl7.org/fhir/R4/operationoutcome.html):
one issue per skipped file (the path in ``diagnostics``), per patient left out, and the
mapping's own warnings. A collection Bundle carries it as an entry; a transaction cannot
(R4 bdl-3: every transaction entry has a ``request``, which would store the report on the
server), so the command writes it beside the Bundle (``--outcome``). The path is in
``issue.diagnostics``, not ``issue.expression`` (a FHIRPath into a resource; a file path is
none). Diagnostics name paths, UIDs and issuers, never a PatientID, name or birth date.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecar.core.fhir_values import identifier_token
from sidecar.core.identity import IdentifierMapping, identifier_mapping_in
from sidecar.core.outcome import issue, operation_outcome

Resource = dict[str, Any]
#: A patient of the headers: (PatientID (0010,0020), IssuerOfPatientID (0010,0021)); a record
#: without PatientID is (None, its StudyInstanceUID): one Patient per such study.
HeaderKey = tuple[str | None, str | None]

NAMESPACE = uuid.UUID("6f1b3c52-1f0e-4a8e-9d57-6c2b0c1d9e11")  # this tool's uuid5 namespace
COLLECTION, TRANSACTION = "collection", "transaction"

#: Why a file was skipped, and the OperationOutcome issue (severity, code) it becomes.
MISSING, UNREADABLE, NOT_DICOM, NO_UIDS, TRUNCATED = (
    "missing",
    "unreadable",
    "not DICOM",
    "no UIDs",
    "truncated",
)
_SKIP_ISSUE = {
    MISSING: ("error", "not-found"),
    UNREADABLE: ("error", "exception"),
    NOT_DICOM: ("information", "not-supported"),  # a folder's notes, a viewer on a CD
    NO_UIDS: ("error", "required"),
    TRUNCATED: ("error", "incomplete"),
}


@dataclass(frozen=True, order=True)
class SkippedFile:
    """A file that is not in the Bundle: where, why (one of the reasons above), in detail
    (the rule it broke; never a value read from it)."""

    path: str
    reason: str
    detail: str

    @property
    def is_loss(self) -> bool:
        """Whether DICOM data was lost (anything but a file that is not DICOM at all)."""
        return self.reason != NOT_DICOM

    def line(self) -> str:
        return f"{self.path}: {self.reason}: {self.detail}"

    def to_issue(self) -> dict[str, Any]:
        severity, code = _SKIP_ISSUE[self.reason]
        return issue(severity, code, f"file skipped: {self.line()}")


@dataclass(frozen=True)
class LeftOut:
    """The studies of one patient that a transaction leaves out, and why."""

    study_uids: tuple[str, ...]
    why: str

    def line(self, first_files: Mapping[str, str]) -> str:
        shown = ", ".join(self.study_uids[:5])
        more = f" and {len(self.study_uids) - 5} more" if len(self.study_uids) > 5 else ""
        plural = "ies" if len(self.study_uids) > 1 else "y"
        first = first_files.get(self.study_uids[0])
        where = f" (first file: {first})" if first else ""
        return f"stud{plural} {shown}{more}{where}: {self.why}"

    def to_issue(self, first_files: Mapping[str, str]) -> dict[str, Any]:
        return issue("error", "required", f"left out of the transaction: {self.line(first_files)}")


@dataclass
class PatientPlan:
    """The header Patients' entries, each study's subject, and the patients left out."""

    entries: list[Resource] = field(default_factory=list)
    subjects: dict[str, Resource] = field(default_factory=dict)  # study UID -> Reference
    left_out: list[LeftOut] = field(default_factory=list)

    @property
    def left_out_studies(self) -> set[str]:
        return {uid for item in self.left_out for uid in item.study_uids}


def plan_patients(
    patients: Mapping[HeaderKey, Resource],
    study_patients: Mapping[str, HeaderKey],
    bundle_type: str,
    mappings: Sequence[IdentifierMapping] = (),
) -> PatientPlan:
    """Entries for the Patients of the headers (*patients*, by key) and the subject of
    every study (*study_patients*: study UID -> key); in a transaction, patients without an
    identifier system are left out with their studies."""
    plan = PatientPlan()
    references: dict[HeaderKey, str] = {}
    refused: dict[HeaderKey, str] = {}
    entries: dict[str, Resource] = {}
    for key in sorted(patients, key=json.dumps):
        patient = with_mapped_identifier(patients[key], key, mappings)
        if bundle_type == TRANSACTION:
            token = _conditional_token(patient)
            if token is None:
                refused[key] = why_no_system(key, mappings)
                continue
            full_url = _urn(f"Patient?identifier={token}")
            entry = {
                "fullUrl": full_url,
                "resource": patient,
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={token}",
                },
            }
        else:
            full_url = _urn(json.dumps(key))
            entry = {"fullUrl": full_url, "resource": patient}
        # two keys may map to one identifier (a mapping without issuer): one Patient
        entries.setdefault(full_url, entry)
        references[key] = full_url
    plan.entries = list(entries.values())
    by_key: dict[HeaderKey, list[str]] = {}
    for study_uid in sorted(study_patients):
        key = study_patients[study_uid]
        if key in references:
            plan.subjects[study_uid] = {"reference": references[key]}
        elif key in refused:
            by_key.setdefault(key, []).append(study_uid)
    plan.left_out = [LeftOut(tuple(uids), refused[key]) for key, uids in by_key.items()]
    return plan


def with_mapped_identifier(
    patient: Resource, key: HeaderKey, mappings: Sequence[IdentifierMapping]
) -> Resource:
    """The Patient with the identifier its mapping gives (``system`` + PatientID, as the
    sidecar creates Patients); unchanged when no mapping covers its issuer."""
    patient_id, issuer = key
    mapping = identifier_mapping_in(mappings, issuer) if patient_id is not None else None
    if mapping is None:
        return patient
    return {**patient, "identifier": [{"system": mapping.system, "value": patient_id}]}


def _conditional_token(patient: Resource) -> str | None:
    """``system|value`` of the Patient's identifier, if it has a system to search by."""
    identifiers = patient.get("identifier") or []
    first = identifiers[0] if identifiers else {}
    if not first.get("system") or not first.get("value"):
        return None
    return identifier_token(first["system"], first["value"])


def why_no_system(key: HeaderKey, mappings: Sequence[IdentifierMapping]) -> str:
    """Why this patient cannot be found or created by identifier (no PatientID value)."""
    patient_id, issuer = key
    alternative = "or give --patient Patient/ID"
    if patient_id is None:
        return f"no PatientID (0010,0020) to find or create their Patient by; {alternative}"
    if issuer is None:
        return (
            "their patient has no IssuerOfPatientID (0010,0021) and no --patient-identifiers "
            f"mapping without issuer covers it: add 'SYSTEM' (PatientID alone), {alternative}"
        )
    named = ", ".join(f"'{m.system}|{m.issuer or ''}'" for m in mappings) or "none given"
    return (
        f"their patient's IssuerOfPatientID (0010,0021) '{issuer}' is no URI or OID and no "
        f"--patient-identifiers mapping covers it ({named}): add 'SYSTEM|{issuer}', "
        f"{alternative}"
    )


def conversion_outcome(
    skipped: Iterable[SkippedFile],
    left_out: Iterable[LeftOut],
    warnings: Iterable[dict[str, Any]],
    first_files: Mapping[str, str],
) -> Resource | None:
    """One OperationOutcome of everything left out or changed; None when there is nothing."""
    issues = [s.to_issue() for s in sorted(skipped)]
    issues += [item.to_issue(first_files) for item in left_out]
    issues += list(warnings)
    return operation_outcome(issues) if issues else None


def build_bundle(
    studies: Sequence[Resource],
    patient_entries: Sequence[Resource],
    bundle_type: str,
    outcome: Resource | None = None,
) -> Resource:
    """A collection or (idempotent) transaction Bundle: Patients, then ImagingStudies, then
    (collection only, see the module's doc) the OperationOutcome."""
    entries = list(patient_entries)
    for study in studies:
        # Every entry has a fullUrl: R4 allows it to be left out only on a POST, and HAPI's
        # Bundle validation rejects a transaction PUT entry without one.
        entry: Resource = {"fullUrl": _urn("ImagingStudy/" + study["id"]), "resource": study}
        if bundle_type == TRANSACTION:
            entry["request"] = {"method": "PUT", "url": f"ImagingStudy/{study['id']}"}
        entries.append(entry)
    if outcome is not None and bundle_type == COLLECTION:
        entries.append({"fullUrl": _urn(json.dumps(outcome, sort_keys=True)), "resource": outcome})
    return {"resourceType": "Bundle", "type": bundle_type, "entry": entries}


def _urn(name: str) -> str:
    """A deterministic ``urn:uuid:`` fullUrl: the same input gives the same Bundle."""
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, name)}"
