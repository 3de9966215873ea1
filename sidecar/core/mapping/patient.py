"""Patient demographics (PS3.3 C.7.1.1 Patient Module) -> R4 Patient, and the key used
to check that records belong to the patient they were fetched for."""

from __future__ import annotations

from typing import Any

from . import tags as t
from .extract import _Reader, patient_identity
from .source import as_record
from .values import clean_text, parse_da, parse_uid, pn_components, pn_groups

#: PatientSex (0010,0040) -> AdministrativeGender.
_GENDER = {"M": "male", "F": "female", "O": "other"}


def patient_key(record: Any) -> tuple[str | None, str | None]:
    """(PatientID, IssuerOfPatientID) exactly as in the data (padding removed)."""
    source = as_record(record)
    if source is None:
        return None, None
    return patient_identity(_Reader(source, []))


def _human_name(group: str, *, use: str | None, family_first: bool) -> dict[str, Any] | None:
    family, given, middle, prefix, suffix = pn_components(group)
    name: dict[str, Any] = {}
    if use:
        name["use"] = use
    if family:
        name["family"] = family
    givens = [g for g in (given, middle) if g]
    if givens:
        name["given"] = givens
    if prefix:
        name["prefix"] = [prefix]
    if suffix:
        name["suffix"] = [suffix]
    if len(name) == (1 if use else 0):
        return None
    order = (
        (prefix, family, given, middle, suffix)
        if family_first
        else (prefix, given, middle, family, suffix)
    )
    name["text"] = " ".join(p for p in order if p)
    return name


def _identifier(pid: str, issuer: str | None) -> dict[str, Any]:
    identifier: dict[str, Any] = {"value": pid}
    if issuer:
        if parse_uid(issuer):
            identifier["system"] = f"urn:oid:{issuer}"
        elif ":" in issuer and " " not in issuer:
            identifier["system"] = issuer
        else:
            identifier["assigner"] = {"display": issuer}
    return identifier


def build_patient(record: Any) -> dict[str, Any]:
    """An R4 Patient from PatientID (0010,0020) + IssuerOfPatientID (0010,0021),
    PatientName (0010,0010), PatientBirthDate (0010,0030) and PatientSex (0010,0040).

    The alphabetic name group is the official name; ideographic and phonetic groups
    (PS3.5 6.2.1.2, e.g. Japanese via ISO 2022 IR 87) are kept as further names.
    No id is set: the caller decides how the Patient is identified on the server.
    """
    source = as_record(record)
    patient: dict[str, Any] = {"resourceType": "Patient"}
    if source is None:
        return patient
    reader = _Reader(source, [])
    pid, issuer = patient_identity(reader)
    if pid:
        patient["identifier"] = [_identifier(pid, issuer)]
    name_value = reader.single(t.PATIENT_NAME)
    if isinstance(name_value, str):
        alphabetic, ideographic, phonetic = pn_groups(name_value)
        names = [
            _human_name(alphabetic, use="official", family_first=False),
            _human_name(ideographic, use=None, family_first=True),
            _human_name(phonetic, use=None, family_first=True),
        ]
        names = [n for n in names if n]
        if names:
            patient["name"] = names
    sex = clean_text(reader.single(t.PATIENT_SEX))
    if sex:
        patient["gender"] = _GENDER.get(sex.upper(), "unknown")
    birth = parse_da(reader.single(t.PATIENT_BIRTH_DATE))
    if birth:
        patient["birthDate"] = birth
    return patient
