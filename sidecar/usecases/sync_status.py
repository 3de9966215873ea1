"""The operator's lookup: one Patient, or one StudyInstanceUID, PACS and FHIR side by side.

By Patient id: the PACS patients its identifiers imply (:func:`sidecar.core.identity.patient_keys`),
each PACS's study-level rows for them (``Pacs.search_patient_studies``), the ImagingStudies
FHIR stores under it (``FhirServer.studies_of``), those of its PACS studies stored under
another Patient, the sync ledger's record (``SyncQueue.state``) and the other Patients
claiming the same PACS patients (:func:`sidecar.usecases.patients.claimants`). By
StudyInstanceUID: every PACS's record of it (``Pacs.find_studies``), the Patients whose
identifiers name the patient it is filed under (:func:`sidecar.usecases.patients.patients_of`,
never creating one), the stored ImagingStudy, and the focus Patient's view as above.
The explanations are pure rules (:mod:`sidecar.core.sync_explanation`); the answers
(:mod:`sidecar.core.sync_report`) carry Patient ids and UIDs only.

A PACS that does not answer is reported as such (the FHIR side is still shown); a FHIR
server that does not answer fails the lookup (``FhirUnavailable``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sidecar.core import identity, qido
from sidecar.core.identity import PatientKey
from sidecar.core.mapping import imaging_study_id, study_uid_of
from sidecar.core.outcome import BadRequest, FetchError, PatientNotFound
from sidecar.core.redaction import redact
from sidecar.core.sync_explanation import (
    PacsCopy,
    PatientContext,
    StoredStudy,
    StudyFacts,
    SyncRecord,
    explain,
    explain_holders,
)
from sidecar.core.sync_report import PatientReport, StudyReport, StudyRow, order
from sidecar.ports import FhirServer, Pacs, Record, SyncQueue
from sidecar.settings import Settings
from sidecar.usecases import patients

#: other Patients read per claim search (a conflict lists at most this many)
CLAIM_LIMIT = 10


@dataclass(frozen=True)
class _View:
    """One Patient as the lookup sees it, before any study is explained."""

    context: PatientContext
    conflicts: dict[str, tuple[str, ...]]  # another Patient -> the PACS it claims in


class SyncStatus:
    """``of_patient(id)`` and ``of_study(uid)``. Thread-safe (it keeps no state)."""

    def __init__(
        self,
        settings: Settings,
        fhir: FhirServer,
        pacs: Mapping[str, Pacs],
        queue: SyncQueue,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.fhir = fhir
        self.pacs = pacs
        self.queue = queue
        self.clock = clock
        self._ours = frozenset(f"Endpoint/{p.endpoint_id}" for p in settings.pacs.values())

    # -- by Patient ------------------------------------------------------------------------

    def of_patient(self, patient_id: str) -> PatientReport:
        """What each side has for this Patient, and why they differ. ``PatientNotFound``
        (404) when FHIR has no such Patient."""
        rows: dict[str, list[PacsCopy]] = {}
        unreachable: dict[str, str] = {}
        patient = self._patient(patient_id)
        keys, refused = identity.patient_keys(patient, self.settings.pacs.values())
        for key in keys:
            try:
                found = self.pacs[key.pacs].search_patient_studies(
                    key.patient_id, key.issuer, qido.StudyCriteria()
                )
            except FetchError as exc:
                unreachable[key.pacs] = redact(exc.diagnostics)
                continue
            for record in found.records:
                copies = rows.setdefault(_uid(record), [])
                if all(c.pacs != key.pacs for c in copies):
                    copies.append(PacsCopy.of(key.pacs, record))
        view = self._view(patient_id, keys, unreachable)
        stored = {
            uid: StoredStudy.of(r, self._ours)
            for r in self.fhir.studies_of(patient_id).values()
            if (uid := study_uid_of(r))
        }
        stored.update(self._stored_elsewhere([u for u in rows if u not in stored]))
        others = self._filed_under_others(
            [u for u, s in stored.items() if u in rows and s.subject != f"Patient/{patient_id}"],
            keys,
        )
        studies = []
        for uid in sorted({*rows, *(u for u, s in stored.items() if _is(s, patient_id))}):
            facts = StudyFacts(uid, tuple(rows.get(uid, ())), stored.get(uid), uid in others)
            studies.append(StudyRow(facts, explain(facts, view.context)))
        return PatientReport(
            patient_id,
            pacs_patients=tuple(dict.fromkeys((k.pacs, k.system) for k in keys)),
            refused=tuple(refused),
            conflicts=view.conflicts,
            unreachable=unreachable,
            sync=view.context.sync,
            studies=tuple(order(studies)),
        )

    # -- by StudyInstanceUID ---------------------------------------------------------------

    def of_study(self, uid: str) -> StudyReport:
        """Every PACS's record of this StudyInstanceUID, the Patients it belongs to, FHIR's
        ImagingStudy, and why. ``BadRequest`` (400) for something that is not a UID."""
        if not qido.is_uid(uid):
            raise BadRequest("not a StudyInstanceUID (digits and dots, at most 64 characters)")
        records: list[tuple[str, Record]] = []
        unreachable: dict[str, str] = {}
        for name, client in self.pacs.items():
            try:
                records += [(name, r) for r in client.find_studies([uid]).get(uid, [])]
            except FetchError as exc:
                unreachable[name] = redact(exc.diagnostics)
        holders: list[str] = []
        for name, record in records:
            found = patients.patients_of(self.fhir, self.settings.pacs[name], record, create=False)
            holders += [h for h in found if h not in holders]
        resource = self.fhir.read("ImagingStudy", imaging_study_id(uid))
        stored = StoredStudy.of(resource, self._ours) if resource else None
        copies = tuple(PacsCopy.of(name, r) for name, r in records)
        verdict = explain_holders(uid, holders, bool(records), stored, unreachable)
        focus = holders[0] if len(holders) == 1 else _patient_of(stored)
        sync = None
        if focus is not None and verdict is None:
            patient = self._patient(focus)
            keys = identity.patient_keys(patient, self.settings.pacs.values())[0]
            view = self._view(focus, keys, unreachable)
            sync = view.context.sync
            pairs = zip(records, copies, strict=True)
            mine = tuple(copy for (name, r), copy in pairs if _filed(r, name, keys))
            verdict = explain(StudyFacts(uid, mine, stored, len(mine) < len(copies)), view.context)
        elif focus is not None:
            sync = self._sync(focus)
        assert verdict is not None
        return StudyReport(
            uid,
            pacs=copies,
            holders=tuple(holders),
            stored=stored,
            patient_id=focus,
            sync=sync,
            explanation=verdict,
            unreachable=unreachable,
        )

    # -- the parts -------------------------------------------------------------------------

    def _patient(self, patient_id: str) -> dict:
        patient = self.fhir.read("Patient", patient_id)
        if patient is None:
            raise PatientNotFound(f"Patient/{patient_id} is not on the FHIR server")
        return patient

    def _sync(self, patient_id: str) -> SyncRecord | None:
        state = self.queue.state(patient_id)
        return SyncRecord.of(state, self.clock()) if state is not None else None

    def _view(self, patient_id: str, keys: list[PatientKey], unreachable: dict) -> _View:
        claims = (
            patients.claimants(
                self.fhir, patient_id, keys, self.settings.pacs.values(), limit=CLAIM_LIMIT
            )
            if keys
            else {}
        )
        conflicts = {
            other: tuple(dict.fromkeys(k.pacs for k in shared))
            for other, shared in sorted(claims.items())
        }
        context = PatientContext(
            patient_id,
            mapped=bool(keys),
            unreachable=tuple(sorted(unreachable)),
            conflicts=tuple(conflicts),
            sync=self._sync(patient_id),
        )
        return _View(context, conflicts)

    def _stored_elsewhere(self, uids: list[str]) -> dict[str, StoredStudy]:
        """The ImagingStudies of these UIDs stored under any Patient (by their fixed ids)."""
        if not uids:
            return {}
        found = self.fhir.read_many("ImagingStudy", [imaging_study_id(u) for u in uids])
        by_id = {imaging_study_id(u): u for u in uids}
        return {by_id[i]: StoredStudy.of(r, self._ours) for i, r in found.items() if i in by_id}

    def _filed_under_others(self, uids: list[str], keys: list[PatientKey]) -> set[str]:
        """Those of these UIDs a PACS also files under a patient these keys do not name."""
        if not uids:
            return set()
        shared: set[str] = set()
        for name, client in self.pacs.items():
            try:
                found = client.find_studies(uids)
            except FetchError:
                continue  # the row stays "stored elsewhere" without the one-UID claim
            for uid, records in found.items():
                if any(not _filed(r, name, keys) for r in records):
                    shared.add(uid)
        return shared


def _uid(record: Record) -> str:
    return qido.first_value(record, qido.STUDY_INSTANCE_UID) or ""


def _filed(record: Record, pacs: str, keys: list[PatientKey]) -> bool:
    """Whether this PACS's record is filed under one of these keys (the fetch's exact rule)."""
    return any(
        k.pacs == pacs and qido.is_exact_patient(record, k.patient_id, k.issuer) for k in keys
    )


def _is(stored: StoredStudy, patient_id: str) -> bool:
    return stored.subject == f"Patient/{patient_id}"


def _patient_of(stored: StoredStudy | None) -> str | None:
    subject = (stored.subject or "") if stored else ""
    return subject.removeprefix("Patient/") if subject.startswith("Patient/") else None
