"""What one fetch writes, decided without I/O: stored + mapped resources -> one transaction.

The use case reads what FHIR stores and what the PACS holds, maps it, and asks this module:

- :func:`moving_studies` / :func:`blocked_moves`: a study stored under another Patient moves
  to this one only when that Patient no longer carries the identifier the PACS files it
  under (one StudyInstanceUID used for two patients stays where it is, with a warning);
- :func:`withdrawal_candidates` / :func:`withdrawn_studies`: stored studies of this patient,
  written by this sidecar, that the PACS no longer returns for it: ``unknown`` when no PACS
  holds them any more, ``entered-in-error`` when a PACS files them under someone else,
  left alone while a PACS still files them under this patient (docs/fetch-imaging.md);
- :func:`plan_writes`: the transaction entries (``PUT`` under client-assigned ids, with
  ``If-Match`` on the stored version, FHIR R4 3.1.0.8.2), what stays as stored, the counts
  and the warnings.

References: FHIR R4 ImagingStudy.status (https://hl7.org/fhir/R4/valueset-imagingstudy-status.html),
transaction (https://hl7.org/fhir/R4/http.html#transaction), managing resource contention
(https://hl7.org/fhir/R4/http.html#concurrency).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.core import qido
from sidecar.core.identity import PatientKey
from sidecar.core.mapping import imaging_study_id, study_uid_of
from sidecar.core.outcome import issue

Resource = dict[str, Any]
Record = dict[str, Any]
Key = tuple[str, str]  # (resourceType, id)

ACTIVE_STATUSES = ("available", "registered")
#: Status of a study this patient had that the PACS now files under another patient.
STATUS_REFILED = "entered-in-error"
#: Status of a study this patient had that no configured PACS holds any more.
STATUS_GONE = "unknown"


def content(resource: Mapping[str, Any]) -> Resource:
    """The resource without server-managed elements (``meta``, ``text``), for comparing."""
    return {k: v for k, v in resource.items() if k not in ("meta", "text")}


# -- studies stored under another Patient ------------------------------------------------------


def moving_studies(
    patient_id: str, study_ids: Iterable[str], stored: Mapping[Key, Resource]
) -> dict[str, str]:
    """ImagingStudy id -> the other Patient it is stored under, for studies that would move."""
    owners: dict[str, str] = {}
    for sid in study_ids:
        before = stored.get(("ImagingStudy", sid))
        ref = ((before or {}).get("subject") or {}).get("reference", "")
        if before and ref != f"Patient/{patient_id}" and ref.startswith("Patient/"):
            owners[sid] = ref.removeprefix("Patient/")
    return owners


def blocked_moves(
    owners: Mapping[str, str],
    stored: Mapping[Key, Resource],
    owner_keys: Mapping[str, list[PatientKey]],
    rows: Mapping[str, list[tuple[str, Record]]],
) -> tuple[set[str], list[dict[str, Any]]]:
    """Which moves are refused, with a warning each: the PACS *still* files the study's
    StudyInstanceUID under its current owner's identifiers (``rows``: per UID, the
    ``(PACS name, study-level record)`` of every PACS that holds it)."""
    blocked: set[str] = set()
    issues = []
    for sid, owner in owners.items():
        uid = study_uid_of(stored[("ImagingStudy", sid)]) or ""
        if any(
            qido.is_exact_patient(row, k.patient_id, k.issuer)
            for pacs, row in rows.get(uid, [])
            for k in owner_keys.get(owner, [])
            if k.pacs == pacs
        ):
            blocked.add(sid)
            issues.append(
                issue(
                    "warning",
                    "multiple-matches",
                    f"ImagingStudy/{sid} was not moved: the PACS files StudyInstanceUID {uid} "
                    f"under Patient/{owner}'s identifiers too (one UID for two patients needs "
                    "fixing in the PACS)",
                )
            )
    return blocked, issues


# -- studies this patient no longer has -----------------------------------------------------


def withdrawal_candidates(
    patient_id: str,
    current_ids: Iterable[str],
    stored: Mapping[Key, Resource],
    our_endpoints: Iterable[str],
) -> dict[str, Resource]:
    """StudyInstanceUID -> stored ImagingStudy of this patient, ``available``/``registered``,
    written by this sidecar (an Endpoint of ours, our id scheme), that the fetch did not
    return: the PACS must be asked about each (:func:`withdrawn_studies`)."""
    current = set(current_ids)
    ours = set(our_endpoints)
    found: dict[str, Resource] = {}
    for (rtype, rid), resource in stored.items():
        if rtype != "ImagingStudy" or rid in current:
            continue
        if (resource.get("subject") or {}).get("reference") != f"Patient/{patient_id}":
            continue
        if resource.get("status") not in ACTIVE_STATUSES:
            continue
        if not any(e.get("reference") in ours for e in resource.get("endpoint") or []):
            continue  # not written by this sidecar: not ours to judge
        uid = study_uid_of(resource)
        if uid is not None and imaging_study_id(uid) == rid:
            found[uid] = resource
    return found


def status_of_missing(rows: Iterable[tuple[str, Record]], keys: Iterable[PatientKey]) -> str | None:
    """``entered-in-error`` if a PACS files the study under someone else, ``unknown`` if no
    PACS has it, None (leave it) if a PACS still files it under this patient."""
    mine = list(keys)
    status = STATUS_GONE
    for pacs, record in rows:
        if any(
            k.pacs == pacs and qido.is_exact_patient(record, k.patient_id, k.issuer) for k in mine
        ):
            return None
        status = STATUS_REFILED
    return status


def withdrawn_studies(
    candidates: Mapping[str, Resource],
    rows: Mapping[str, list[tuple[str, Record]]],
    keys: list[PatientKey],
) -> list[Resource]:
    """The candidates with their new status (the rest stay as stored)."""
    changed = []
    for uid, resource in candidates.items():
        status = status_of_missing(rows.get(uid, []), keys)
        if status is not None:
            changed.append({**content(resource), "status": status})
    return changed


# -- the transaction -------------------------------------------------------------------------------


@dataclass
class WritePlan:
    """One transaction's entries, what stays as stored, the counts and the warnings."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    written: list[tuple[Key, Resource]] = field(default_factory=list)  # in entry order
    unchanged: dict[Key, Resource] = field(default_factory=dict)
    counts: dict[str, int] = field(
        default_factory=lambda: {"created": 0, "updated": 0, "unchanged": 0}
    )
    issues: list[dict[str, Any]] = field(default_factory=list)


def plan_writes(
    endpoints: list[Resource],
    studies: list[Resource],
    withdrawn: list[Resource],
    stored: Mapping[Key, Resource],
) -> WritePlan:
    """Every resource that differs from what is stored becomes a ``PUT [type]/[id]`` entry
    (``If-Match`` on the stored version); equal ones stay as stored. ImagingStudies are
    counted created / updated / unchanged; each withdrawal gets a warning."""
    plan = WritePlan()
    for resource in [*endpoints, *studies, *withdrawn]:
        key = (resource["resourceType"], resource["id"])
        before = stored.get(key)
        if before is not None and content(before) == content(resource):
            plan.unchanged[key] = before
            plan.counts["unchanged"] += key[0] == "ImagingStudy"
            continue
        request: dict[str, Any] = {"method": "PUT", "url": f"{key[0]}/{key[1]}"}
        version = ((before or {}).get("meta") or {}).get("versionId")
        if version:
            request["ifMatch"] = f'W/"{version}"'
        plan.entries.append(
            {"fullUrl": f"{key[0]}/{key[1]}", "resource": resource, "request": request}
        )
        plan.written.append((key, resource))
        if key[0] == "ImagingStudy":
            plan.counts["updated" if before is not None else "created"] += 1
    for w in withdrawn:
        plan.issues.append(
            issue(
                "warning",
                "informational",
                f"ImagingStudy/{w['id']} is no longer this patient's in the PACS: "
                f"status set to {w['status']}",
            )
        )
    return plan


def with_version(resource: Resource, response: Mapping[str, Any]) -> Resource:
    """The written resource with the ``meta`` the server's transaction response gives it
    (``etag`` W/"n" -> versionId, ``lastModified`` -> lastUpdated)."""
    etag = str(response.get("etag") or "")
    version = etag.removeprefix("W/").strip('"')
    meta = {
        k: v
        for k, v in (("versionId", version), ("lastUpdated", response.get("lastModified")))
        if v
    }
    return {**resource, "meta": meta} if meta else resource
