"""Which PACS patient a FHIR Patient is, and whether another Patient claims the same one.

Pure decisions (no I/O), used by the use case before anything is queried or written:

- :func:`patient_keys`: the (PACS, PatientID, IssuerOfPatientID) queries a Patient's
  identifiers imply, through the configured identifier mappings. Identifiers with
  ``use = old`` or an ended ``period`` are retired and imply nothing; values a PACS could
  read as matching syntax are refused (``qido.check_match_value``).
- :func:`carries_identifier`: the exact comparison that follows every FHIR identifier
  search (a server may match loosely: HAPI trims values and ignores control characters).
- :func:`claim_tokens`: the one ``identifier`` search that finds every Patient that may
  claim a PACS patient (every system the PACS maps to an overlapping issuer, DICOM padding
  included: ``P-1`` and ``P-1 `` are one PatientID, PS3.5 6.2 LO).
- :func:`claimants`: the *other* Patients whose identifiers imply one of these keys. Two
  Patients for one PACS patient is a conflict to resolve in the FHIR server, never a reason
  to move studies.
- :func:`holders`: the Patients whose fetch would take a PACS study record (the triggers
  and the backfill ask this: which Patients to sync for a study).
- In both, a Patient that was merged away (``link.type = replaced-by``) claims nothing: one
  rule, :func:`live_keys`.
- :func:`identifier_mapping_for`, :func:`patient_resource`: the identifier and the Patient
  a PACS patient gets when the backfill or a trigger may create it
  (:func:`identifier_mapping_in`: the same rule over any list of mappings, for ``convert``).

References: FHIR R4 Patient.identifier.use / period, Patient.link
(https://hl7.org/fhir/R4/patient-definitions.html); DICOM PS3.3 C.7.1.1 (Patient Module).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sidecar.core import qido
from sidecar.core.fhir_values import identifier_token
from sidecar.core.mapping import build_patient

Resource = dict[str, Any]
Record = dict[str, Any]
REPLACED_BY = "replaced-by"  # Patient.link.type: this record is obsolete, `other` survives
#: Marks the Patients the sidecar created from DICOM demographics (for audits and clean-up).
CREATED_TAG = {"system": "urn:dicom-fhir-sidecar:tag", "code": "created-by-backfill"}


@dataclass(frozen=True)
class IdentifierMapping:
    """A Patient.identifier system whose value is the PACS's PatientID (0010,0020).

    ``issuer`` is the IssuerOfPatientID (0010,0021) that identifiers of this system imply;
    None means the PACS is queried and checked on PatientID alone. Configured per PACS
    (``SIDECAR_PACS_<NAME>_PATIENT_IDENTIFIERS``, sidecar/settings).
    """

    system: str
    issuer: str | None = None


class PacsIdentity(Protocol):
    """What these rules need to know of a PACS (``PacsIdentity`` is one): its name and how
    Patient.identifier systems map onto its PatientIDs."""

    @property
    def name(self) -> str: ...

    @property
    def patient_identifiers(self) -> tuple[IdentifierMapping, ...]: ...

    def mapping_for(self, system: str | None) -> IdentifierMapping | None: ...


@dataclass(frozen=True)
class DicomPatient:
    """One exact (PatientID (0010,0020), IssuerOfPatientID (0010,0021)) of a PACS: what its
    study records name (None: the record carries no issuer)."""

    patient_id: str
    issuer: str | None

    @property
    def key(self) -> str:
        return f"{self.patient_id}|{self.issuer or ''}"

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> DicomPatient | None:
        """The patient a study record names, if its PatientID may be queried safely."""
        try:
            patient_id = qido.check_match_value(qido.first_value(record, qido.PATIENT_ID))
        except qido.RefusedValue:
            return None
        return cls(patient_id, qido.first_value(record, qido.ISSUER_OF_PATIENT_ID))


@dataclass(frozen=True)
class PatientKey:
    """One QIDO patient query: this PACS, this PatientID (+ issuer), from this identifier."""

    pacs: str
    system: str | None
    patient_id: str
    issuer: str | None

    @property
    def identity(self) -> tuple[str, str, str | None]:
        """What the PACS files studies under: (PACS, PatientID, IssuerOfPatientID)."""
        return self.pacs, self.patient_id, self.issuer

    def overlaps(self, other: PatientKey) -> bool:
        """Whether both keys can name one study: the same PACS and PatientID, and issuers
        that are equal or not asked for (a key without issuer takes any issuer's studies)."""
        return (
            self.pacs == other.pacs
            and self.patient_id == other.patient_id
            and (self.issuer is None or other.issuer is None or self.issuer == other.issuer)
        )


def current_identifiers(
    patient: Mapping[str, Any], now: datetime | None = None
) -> Iterable[Mapping[str, Any]]:
    """Patient.identifier entries in use: not ``use = old``, no ``period.end`` in the past
    (an end in the future is a planned retirement, still in use now)."""
    moment = now or datetime.now(UTC)
    for ident in patient.get("identifier") or []:
        if not isinstance(ident, Mapping):
            continue
        if ident.get("use") == "old" or _ended(ident.get("period"), moment):
            continue  # a retired identifier must not pull another patient's studies
        yield ident


def _ended(period: Any, now: datetime) -> bool:
    """Whether an R4 Period's ``end`` (date or dateTime) lies before ``now``; an end that
    cannot be read counts as ended (refuse rather than risk another patient's studies)."""
    end = (period or {}).get("end") if isinstance(period, Mapping) else None
    if not end:
        return False
    text = str(end)
    try:
        if len(text) <= 10:  # YYYY, YYYY-MM, YYYY-MM-DD: the end of that year/month/day
            parts = [int(p) for p in text.split("-")]
            year = parts[0]
            month = parts[1] if len(parts) > 1 else 12
            day = parts[2] if len(parts) > 2 else calendar.monthrange(year, month)[1]
            moment = datetime(year, month, day, 23, 59, 59, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError:
        return True
    return moment < now


def patient_keys(
    patient: Mapping[str, Any], pacs: Iterable[PacsIdentity]
) -> tuple[list[PatientKey], list[str]]:
    """The PACS queries this Patient implies, and why any identifier was refused."""
    keys: list[PatientKey] = []
    refused: list[str] = []
    pacs_list = list(pacs)
    for ident in current_identifiers(patient):
        system, value = ident.get("system"), ident.get("value")
        if not isinstance(value, str) or (system is not None and not isinstance(system, str)):
            continue
        for settings in pacs_list:
            mapping = settings.mapping_for(system)
            if mapping is None:
                continue
            try:
                patient_id = qido.check_match_value(value, what=f"identifier ({system})")
                if mapping.issuer is not None:
                    qido.check_match_value(mapping.issuer, what="issuer")
            except qido.RefusedValue as exc:
                refused.append(str(exc))
                continue
            key = PatientKey(settings.name, system, patient_id, mapping.issuer)
            if key not in keys:
                keys.append(key)
    return keys, list(dict.fromkeys(refused))


def carries_identifier(patient: Mapping[str, Any], system: str | None, value: str) -> bool:
    """Whether the Patient has exactly this identifier in use (system None: any system;
    ``""``: an identifier without a system)."""
    return any(
        ident.get("value") == value and (system is None or (ident.get("system") or "") == system)
        for ident in current_identifiers(patient)
    )


def is_merged_away(patient: Mapping[str, Any]) -> bool:
    """A Patient replaced by another one (a merge): it is obsolete, its identity moved."""
    return any(
        isinstance(link, Mapping) and link.get("type") == REPLACED_BY
        for link in patient.get("link") or []
    )


def claim_tokens(keys: Iterable[PatientKey], pacs: Iterable[PacsIdentity]) -> list[str]:
    """``identifier`` search tokens that find every Patient claiming one of these keys:
    under *every* system its PACS maps to an overlapping issuer, not only the key's own.

    DICOM pads LO values with spaces (PS3.5 6.2); a FHIR server may or may not trim, so
    each value is also asked for with a trailing and a leading space.
    """
    by_name = {p.name: p for p in pacs}
    tokens: list[str] = []
    for key in keys:
        mappings = by_name[key.pacs].patient_identifiers if key.pacs in by_name else ()
        systems = [
            m.system
            for m in mappings
            if key.issuer is None or m.issuer is None or m.issuer == key.issuer
        ] or [key.system]
        for system in dict.fromkeys(systems):
            for value in (key.patient_id, f"{key.patient_id} ", f" {key.patient_id}"):
                token = identifier_token(system, value)
                if token not in tokens:
                    tokens.append(token)
    return tokens


def claimants(
    patient_id: str,
    keys: Iterable[PatientKey],
    candidates: Iterable[Mapping[str, Any]],
    pacs: Iterable[PacsIdentity],
) -> dict[str, list[PatientKey]]:
    """Other Patients (by id) whose current identifiers imply a key overlapping one of
    ``keys`` (the same PACS patient, or a key without issuer that takes its studies)."""
    mine = list(keys)
    pacs_list = list(pacs)
    found: dict[str, list[PatientKey]] = {}
    for other in candidates:
        other_id = other.get("id")
        if not isinstance(other_id, str) or other_id == patient_id:
            continue
        theirs = live_keys(other, pacs_list)
        shared = [k for k in mine if any(k.overlaps(t) for t in theirs)]
        if shared:
            found[other_id] = list(dict.fromkeys(shared))
    return found


def live_keys(patient: Mapping[str, Any], pacs: Iterable[PacsIdentity]) -> list[PatientKey]:
    """The keys a Patient claims PACS patients by: none when it was merged away."""
    return [] if is_merged_away(patient) else patient_keys(patient, pacs)[0]


def holders(
    pacs: PacsIdentity, who: DicomPatient, candidates: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Ids of the Patients whose fetch takes the studies this PACS files under ``who``: a
    live key of this PACS with its PatientID and either no issuer or ``who``'s issuer (the
    exact check a fetch applies to every record, :func:`sidecar.core.qido.is_exact_patient`)."""
    ids = []
    for patient in candidates:
        if any(
            k.pacs == pacs.name
            and k.patient_id == who.patient_id
            and k.issuer in (None, who.issuer)
            for k in live_keys(patient, [pacs])
        ):
            ids.append(str(patient.get("id")))
    return ids


def tokens_for(pacs: PacsIdentity, who: DicomPatient) -> list[str]:
    """The :func:`claim_tokens` search for the Patients that may hold ``who``."""
    return claim_tokens([PatientKey(pacs.name, None, who.patient_id, who.issuer)], [pacs])


def identifier_mapping_for(pacs: PacsIdentity, issuer: str | None) -> IdentifierMapping | None:
    """The identifier system a PACS patient gets when a Patient is created for it: the rule
    of :func:`identifier_mapping_in` over this PACS's ``patient_identifiers``."""
    return identifier_mapping_in(pacs.patient_identifiers, issuer)


def identifier_mapping_in(
    mappings: Sequence[IdentifierMapping], issuer: str | None
) -> IdentifierMapping | None:
    """The mapping that gives a patient of this IssuerOfPatientID (0010,0021) its system.

    A mapping with this exact issuer wins. A mapping without issuer (values are PatientIDs
    alone) serves patients without issuer, and patients with an issuer only when no mapping
    names an issuer at all: otherwise the same PatientID under two issuers would become one
    FHIR Patient. None: this patient cannot be given an identifier (refused with a warning).
    ``dicom-fhir convert --patient-identifiers`` applies the same rule to files.
    """
    exact = next((m for m in mappings if m.issuer == issuer), None)
    if exact is not None or issuer is None:
        return exact
    if all(m.issuer is None for m in mappings):
        return next(iter(mappings), None)
    return None


def patient_resource(
    record: Record | None, mapping: IdentifierMapping, who: DicomPatient
) -> Resource:
    """The Patient created for a PACS patient: DICOM demographics, the mapped identifier
    only, tagged :data:`CREATED_TAG`."""
    patient = build_patient(record) if record is not None else {"resourceType": "Patient"}
    patient["identifier"] = [{"system": mapping.system, "value": who.patient_id}]
    patient["meta"] = {"tag": [CREATED_TAG]}
    return patient
