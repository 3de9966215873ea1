"""``sweep:<pacs>``: the stored ImagingStudies checked against the PACS (deleted or moved).

Every ``SIDECAR_SWEEP_SECONDS`` this walks the ImagingStudies of this PACS's Endpoint that
are ``available`` or ``registered``, asks the PACS for them 50 UIDs at a time, and submits
a sync of the subject of every study the PACS no longer has (the use case then sets it
``unknown``), files under another patient (``entered-in-error``; the new owner's Patients
are submitted too, so the study moves), or holds with other counts than stored
(NumberOfStudyRelatedSeries (0020,1206) / ...Instances (0020,1208) against
``ImagingStudy.numberOfSeries`` / ``numberOfInstances``: a series or instance deleted,
which Orthanc's change log does not record; for a study several PACS hold, more than
stored, or a part that changed since the last sweep). Its cost is one FHIR page per 200
stored studies and one QIDO per 50, per sweep: the bound on how fast a deletion is seen
grows with the number of stored studies (docs/sync.md).
"""

from __future__ import annotations

from typing import Any

from sidecar.core import identity, qido
from sidecar.core.mapping import study_uid_of
from sidecar.ports import FhirServer, Pacs, StepReport, SyncQueue, TriggerLease
from sidecar.settings import PacsSettings
from sidecar.usecases.patients import patients_of

BATCH = 50
Counts = tuple[int | None, int | None]  # series, instances


class StoredStudySweep:
    def __init__(
        self,
        pacs: PacsSettings,
        client: Pacs,
        fhir: FhirServer,
        queue: SyncQueue,
        interval: float,
    ) -> None:
        self.name = f"sweep:{pacs.name}"
        self.interval = interval
        self.pacs = pacs
        self.client = client
        self.fhir = fhir
        self.queue = queue
        # StudyInstanceUID -> what this PACS held of a shared study it holds part of, at the
        # last sweep (in memory: after a restart or a takeover each is submitted once)
        self._partial: dict[str, Counts] = {}

    def step(self, lease: TriggerLease) -> StepReport:
        stored = self.fhir.iterate(
            "ImagingStudy",
            {
                "endpoint": f"Endpoint/{self.pacs.endpoint_id}",
                "status": "available,registered",
                "_elements": "identifier,subject,status,endpoint,numberOfSeries,numberOfInstances",
            },
        )
        checked = enqueued = 0
        partial: dict[str, Counts] = {}
        batch: list[dict[str, Any]] = []
        for study in stored:
            batch.append(study)
            if len(batch) == BATCH:
                enqueued += self._check(batch, partial)
                checked += len(batch)
                batch = []
        if batch:
            enqueued += self._check(batch, partial)
            checked += len(batch)
        self._partial = partial
        return StepReport(enqueued, extra={"checked": checked})

    def _check(self, studies: list[dict[str, Any]], partial: dict[str, Counts]) -> int:
        by_uid = {uid: s for s in studies if (uid := study_uid_of(s))}
        present = self.client.find_studies(by_uid)
        subjects = {
            ref.removeprefix("Patient/")
            for s in studies
            if (ref := (s.get("subject") or {}).get("reference", "")).startswith("Patient/")
        }
        patients = self.fhir.read_many("Patient", sorted(subjects))
        wanted: set[str] = set()
        for uid, study in by_uid.items():
            subject = ((study.get("subject") or {}).get("reference") or "").removeprefix("Patient/")
            records = present.get(uid)
            if not records:
                wanted.add(subject)  # gone from the PACS: the use case marks it unknown
                continue
            keys, _ = identity.patient_keys(patients.get(subject) or {}, [self.pacs])
            exact = [
                r for r in records for k in keys if qido.is_exact_patient(r, k.patient_id, k.issuer)
            ]
            if not exact:
                wanted.add(subject)  # refiled: entered-in-error here ...
                for record in records:  # ... moved there
                    wanted.update(patients_of(self.fhir, self.pacs, record))
            elif self._counts_are_news(uid, study, _held(exact[0]), partial):
                wanted.add(subject)  # a series or instance deleted (or added unseen)
        for patient_id in sorted(p for p in wanted if p):
            self.queue.submit(patient_id, None, reason=self.name)
        return len([p for p in wanted if p])

    def _counts_are_news(
        self, uid: str, study: dict[str, Any], held: Counts, partial: dict[str, Counts]
    ) -> bool:
        """Whether this PACS's counts of a stored study call for a sync. A study several
        PACS share is stored with the union of their series: more than stored is news;
        less is this PACS's part, news only when the part changed since the last sweep."""
        signs = _signs(held, study)
        if len(study.get("endpoint") or []) <= 1:
            return bool(signs)
        if ">" in signs:
            return True
        if "<" in signs:
            partial[uid] = held
            return self._partial.get(uid) != held
        return False


_COUNTS = (("numberOfSeries", "00201206"), ("numberOfInstances", "00201208"))


def _held(row: dict[str, Any]) -> Counts:
    """NumberOfStudyRelatedSeries (0020,1206) and ...Instances (0020,1208) of a QIDO row."""
    series, instances = (_number(qido.first_value(row, tag)) for _, tag in _COUNTS)
    return series, instances


def _signs(held: Counts, study: dict[str, Any]) -> set[str]:
    """``>``/``<`` for each count the PACS holds more/less of than stored (either side
    missing: not compared)."""
    signs = set()
    for now, (element, _) in zip(held, _COUNTS, strict=True):
        before = study.get(element)
        if now is not None and isinstance(before, int) and now != before:
            signs.add(">" if now > before else "<")
    return signs


def _number(value: Any) -> int | None:
    try:
        return int(str(value).strip()) if value is not None else None
    except ValueError:
        return None
