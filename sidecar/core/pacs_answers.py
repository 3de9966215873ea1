"""What one PACS answered for a patient, and the exact-patient rules applied to it (pure).

QIDO-RS matching is loose on many PACS (wildcards, case, a StudyInstanceUID filed under two
patients); every record the use case keeps passed these checks:

- study level: exactly this PatientID (0010,0020) and, when the key names one,
  IssuerOfPatientID (0010,0021) (:func:`sidecar.core.qido.is_exact_patient`, applied in the
  PACS adapter); a key without issuer that meets records under more than one issuer (no
  issuer counts as one) cannot tell those patients apart: 409 (:func:`refuse_mixed_issuers`,
  docs/fetch-imaging.md "Identifiers without an issuer");
- series and instance level: a row must name the study record's patient
  (:func:`row_owner`); a row that leaves out the PatientID or issuer is left out too, since
  the query asked for them (PS3.18 10.6.1.2.3 ``includefield``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sidecar.core import qido
from sidecar.core.identity import PatientKey
from sidecar.core.mapping import Facts
from sidecar.core.outcome import AmbiguousPatient, issue

Record = dict[str, Any]
Resource = dict[str, Any]
NO_ISSUER = "(no issuer)"


@dataclass
class PacsAnswer:
    """What one PACS answered for a patient: the records kept, and what was left out."""

    pacs: str
    records: list[Record] = field(default_factory=list)
    foreign: int = 0  # study records not exactly this patient's (or outside the criteria)
    invalid_uids: list[str] = field(default_factory=list)  # study records without a valid UID
    reused: list[Resource] = field(default_factory=list)  # stored studies nothing changed in
    rows: dict[str, Record] = field(default_factory=dict)  # study-level rows by StudyInstanceUID
    foreign_contents: int = 0  # series/instance rows of another patient under a study UID
    anonymous_contents: int = 0  # series/instance rows that name no patient at all
    #: stage 1 of the mapping, done per study as its rows arrived (its UID in ``extracted``)
    facts: list[Facts] = field(default_factory=list)
    extracted: set[str] = field(default_factory=set)


def refuse_mixed_issuers(pacs: str, key: PatientKey, records: Iterable[Record]) -> None:
    """A key without issuer takes a PatientID's studies under any issuer; when the PACS files
    that PatientID under several issuers (records without one included), those may be
    several patients: 409, nothing written, the issuers named."""
    issuers = {qido.first_value(r, qido.ISSUER_OF_PATIENT_ID) or NO_ISSUER for r in records}
    if len(issuers) > 1:
        raise AmbiguousPatient(
            f"PACS {pacs} files this patient's PatientID under several issuers "
            f"({', '.join(sorted(issuers))}); the identifier system {key.system!r} implies no "
            "issuer and cannot tell these patients apart. Map the system to an issuer "
            "(SIDECAR_PACS_<NAME>_PATIENT_IDENTIFIERS system|ISSUER) or correct the PACS"
        )


SAME, FOREIGN, ANONYMOUS = "same", "foreign", "anonymous"


def row_owner(row: Record, study: Record) -> str:
    """Whose a series/instance row is, against its study-level record: ``same`` when it
    names the same PatientID and IssuerOfPatientID, ``foreign`` when it names another,
    ``anonymous`` when it leaves out one the study record has (not taken on trust)."""
    verdict = SAME
    for tag in (qido.PATIENT_ID, qido.ISSUER_OF_PATIENT_ID):
        mine, theirs = qido.first_value(study, tag), qido.first_value(row, tag)
        if theirs is not None and theirs != mine:
            return FOREIGN
        if theirs is None and mine is not None:
            verdict = ANONYMOUS
    return verdict


def drop_issues(answers: Iterable[PacsAnswer]) -> list[dict[str, Any]]:
    """One issue per kind of record the PACS sent and the fetch left out."""
    issues = []
    for answer in answers:
        if answer.foreign_contents:
            issues.append(
                issue(
                    "warning",
                    "multiple-matches",
                    f"PACS {answer.pacs}: {answer.foreign_contents} series/instance record(s) "
                    "under this patient's StudyInstanceUIDs belong to another patient (a UID "
                    "used for two patients) and were left out",
                )
            )
        if answer.anonymous_contents:
            issues.append(
                issue(
                    "warning",
                    "incomplete",
                    f"PACS {answer.pacs}: {answer.anonymous_contents} series/instance record(s) "
                    "did not say whose they are (no PatientID or IssuerOfPatientID, though the "
                    "query asked for them) and were left out",
                )
            )
        if answer.foreign:
            issues.append(
                issue(
                    "information",
                    "informational",
                    f"PACS {answer.pacs}: {answer.foreign} study record(s) that were not exactly "
                    "this patient's (PatientID, IssuerOfPatientID) or outside the criteria "
                    "were left out",
                )
            )
        for uid in answer.invalid_uids:
            issues.append(
                issue(
                    "warning",
                    "invalid",
                    f"PACS {answer.pacs}: a study record of this patient was skipped: its "
                    f"StudyInstanceUID (0020,000D) {uid!r} is not a valid DICOM UID",
                )
            )
    return issues
