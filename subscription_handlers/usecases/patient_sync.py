"""One patient's sync, as a worker runs it: the same use case as ``$fetch-imaging``.

The worker acts on the Patient as the FHIR server has it *now* (not on the notification's
copy, which may be stale or arrive out of order), applies the rule of ``patient_rules``
(deleted, merged, inactive) and otherwise calls ``FetchImaging`` with ``persist=True``:
studies the PACS now files under the Patient's current identifiers are written with this
subject, and studies it no longer holds for them are withdrawn by the use case (see
docs/fetch-imaging.md), which is how "the studies follow the identifier".
"""

from __future__ import annotations

import logging
from typing import Any

from sidecar.core.fetch_request import FetchRequest
from sidecar.core.notification_rules import DELETED_FINGERPRINT, relevant_fingerprint, rule_for
from sidecar.core.outcome import DuplicatePatient, FetchError, NotMappable, PatientNotFound
from sidecar.core.sync_state import MISSING, SyncFailed, SyncOutcome
from sidecar.usecases.fetch_imaging import FetchImaging

log = logging.getLogger(__name__)

RETRIABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


def identifier_keys(fetch: FetchImaging, patient: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The PACS queries a Patient implies, as tuples."""
    return [(k.pacs, k.system, k.patient_id, k.issuer) for k in fetch.mappable_identifiers(patient)]


def fingerprint_for(fetch: FetchImaging, patient: dict[str, Any]) -> str:
    """What a sync of this Patient depends on (see patient_rules.relevant_fingerprint)."""
    return relevant_fingerprint(patient, identifier_keys(fetch, patient))


class PatientSync:
    """Callable ``(patient_id) -> SyncOutcome``; raises ``SyncFailed``. Thread-safe."""

    def __init__(self, fetch: FetchImaging) -> None:
        self.fetch = fetch

    def __call__(
        self,
        patient_id: str,
        refresh: bool = False,
        refresh_studies: frozenset[str] = frozenset(),
    ) -> SyncOutcome:
        try:
            patient = self.fetch.fhir.read_patient(patient_id)
        except PatientNotFound:
            return self._gone(patient_id)
        except FetchError as exc:
            raise _failure(exc) from exc

        fingerprint = fingerprint_for(self.fetch, patient)
        rule = rule_for(patient)
        if rule.kind == "merged":
            return SyncOutcome(
                "merged",
                fingerprint,
                follow_up=(rule.survivor_id,) if rule.survivor_id else (),
                detail=f"replaced by Patient/{rule.survivor_id}",
            )
        if rule.kind == "inactive":
            return SyncOutcome("inactive", fingerprint, detail="Patient.active is false")
        try:
            request = FetchRequest(
                patient_id=patient_id,
                persist=True,
                refresh=refresh,
                refresh_studies=refresh_studies,
            )
            result = self.fetch(request)
        except PatientNotFound:
            return self._gone(patient_id)
        except NotMappable as exc:
            return SyncOutcome("no-identifier", fingerprint, detail=exc.diagnostics)
        except DuplicatePatient as exc:
            # not retried (it needs a person) and nothing written; no fingerprint, so the
            # next change of this Patient syncs it again (docs/sync.md, identity conflicts)
            return SyncOutcome("conflict", None, detail=exc.diagnostics)
        except FetchError as exc:
            raise _failure(exc) from exc
        # the use case re-read the Patient: record what it actually acted on
        fingerprint = fingerprint_for(self.fetch, result.patient)
        return SyncOutcome("synced", fingerprint, studies=len(result.studies))

    def _gone(self, patient_id: str) -> SyncOutcome:
        """A read found no Patient. Its ImagingStudies are deleted only when the server says
        it was deleted (410 Gone, or a DELETE in its history): a single 404 (a proxy, a
        wrong base URL, a replica behind) must not erase a patient's imaging. A Patient that
        never existed (a notification with a random id) leaves no ledger record behind."""
        try:
            deleted = self.fetch.fhir.was_deleted("Patient", patient_id)
        except FetchError as exc:
            raise _failure(exc) from exc
        if deleted:
            return self._deleted(patient_id)
        return SyncOutcome(MISSING, None, detail="the FHIR server has no such Patient")

    def _deleted(self, patient_id: str) -> SyncOutcome:
        """The Patient is gone: delete the ImagingStudies this sidecar wrote for it.

        They are a copy of PACS data and are re-created by the sync of whichever Patient
        carries the identifier next; the PACS itself is never touched.
        """
        ours = {f"Endpoint/{p.endpoint_id}" for p in self.fetch.settings.pacs.values()}
        try:
            studies = self.fetch.fhir.studies_of(patient_id)
            doomed = [
                sid
                for sid, study in studies.items()
                if any((e or {}).get("reference") in ours for e in study.get("endpoint") or [])
            ]
            if doomed:
                entries = [
                    {"request": {"method": "DELETE", "url": f"ImagingStudy/{i}"}} for i in doomed
                ]
                self.fetch.fhir.transaction(entries)
        except FetchError as exc:
            raise _failure(exc) from exc
        log.info("patient deleted", extra={"patient_id": patient_id, "deleted_studies": doomed})
        return SyncOutcome("deleted", DELETED_FINGERPRINT, studies=len(doomed))


def _failure(exc: Any) -> SyncFailed:
    status = getattr(exc, "status", 500)
    return SyncFailed(
        f"HTTP {status}: {getattr(exc, 'diagnostics', exc)}",
        retriable=status in RETRIABLE_STATUSES,
    )
