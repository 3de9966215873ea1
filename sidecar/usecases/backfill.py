"""Backfill: bring a whole PACS into FHIR, window by window, resumable after a kill.

    report = services.backfill(BackfillOptions(pacs="main")).run()   # dicom-fhir sync --all

1. Walk the PACS by StudyDate windows (:mod:`sidecar.core.backfill_plan`; study-level QIDO,
   paged), keeping only records the PACS returned for the window exactly.
2. Group each window's studies by exact (PatientID, IssuerOfPatientID); values a PACS could
   read as matching syntax are refused with a warning.
3. Find the FHIR Patient that is that PACS patient with the same rule as the triggers
   (:func:`sidecar.usecases.patients.patients_of`); optionally create it from the DICOM
   demographics (a conditional create, so a resumed run creates no duplicates).
4. Run the shared use case per patient, narrowed to the window, on a thread pool; it maps,
   diffs and writes one transaction per patient (idempotent). Outages are retried per
   patient (:mod:`sidecar.core.retry`).
5. Record each patient, then each window, in the checkpoint
   (:class:`sidecar.ports.BackfillCheckpoint`); a rerun with the same parameters skips them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sidecar.core import qido, retry
from sidecar.core.backfill_plan import (
    DEFAULT_WINDOW_DAYS,
    PATIENT_FIELDS,
    PatientGroup,
    Window,
    date_windows,
    group_by_patient,
)
from sidecar.core.fetch_request import FetchRequest
from sidecar.core.identity import DicomPatient
from sidecar.core.mapping import Detail
from sidecar.core.outcome import FetchError, FhirUnavailable, PacsUnavailable
from sidecar.ports import BackfillCheckpoint, Progress, Record
from sidecar.usecases.fetch_imaging import FetchImaging
from sidecar.usecases.patients import patients_of

log = logging.getLogger(__name__)
#: what a patient's sync is retried through (FHIR or PACS down, slow)
TRANSIENT = (FhirUnavailable, PacsUnavailable)


@dataclass(frozen=True)
class BackfillOptions:
    pacs: str
    since: date | None = None
    until: date | None = None
    window_days: int = DEFAULT_WINDOW_DAYS
    create_patients: bool = False
    workers: int = 4
    restart: bool = False
    detail: Detail = Detail.INSTANCE
    attempts: int = 3  # per patient, on FHIR/PACS outages and timeouts
    retry_delay: float = 2.0

    def checkpoint_params(self) -> dict[str, Any]:
        """What makes two runs the same backfill (the checkpoint's identity)."""
        return {
            "pacs": self.pacs,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "window_days": self.window_days,
            "create_patients": self.create_patients,
            "detail": str(self.detail),
        }


@dataclass
class BackfillReport:
    windows: int = 0
    windows_skipped: int = 0
    patients: int = 0
    patients_skipped: int = 0  # done by an earlier, interrupted run
    patients_created: int = 0
    studies: int = 0
    instances: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    checkpoint: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        rate = self.instances / self.seconds if self.seconds else 0.0
        lines = [
            f"backfill: {self.windows} window(s) ({self.windows_skipped} done before), "
            f"{self.patients} patient-window(s) synced ({self.patients_skipped} done before, "
            f"{self.patients_created} created), {self.studies} stud(ies), "
            f"{self.instances} instance(s) in {self.seconds:.1f} s ({rate:.0f} instances/s)",
            f"ImagingStudy: {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged",
        ]
        if self.refused:
            lines.append(f"refused (not queryable safely): {len(self.refused)}")
            lines += [f"  {r}" for r in self.refused[:20]]
        if self.unresolved:
            lines.append(f"no FHIR Patient (or more than one): {len(self.unresolved)}")
            lines += [f"  {r}" for r in self.unresolved[:20]]
        if self.failed:
            lines.append(f"FAILED (rerun to retry): {len(self.failed)}")
            lines += [f"  {r}" for r in self.failed[:20]]
        lines.append(f"checkpoint: {self.checkpoint}")
        return "\n".join(lines)


class _Silent:
    """No progress display (the default outside a terminal command)."""

    def update(self, n: int, **postfix: Any) -> None: ...

    def close(self) -> None: ...


class Backfill:
    """One backfill run over one PACS. ``fetch`` is the shared use case."""

    def __init__(
        self,
        fetch: FetchImaging,
        options: BackfillOptions,
        *,
        checkpoint: BackfillCheckpoint,
        today: date | None = None,
    ) -> None:
        self.fetch = fetch
        self.options = options
        self.pacs_settings = fetch.settings.pacs[options.pacs]
        self.client = fetch.pacs[options.pacs]
        self.fhir = fetch.fhir
        self.windows = date_windows(options.since, options.until, options.window_days, today=today)
        self.checkpoint = checkpoint
        self.report = BackfillReport(checkpoint=str(checkpoint.path))
        self._report_lock = threading.Lock()

    # -- discovery ------------------------------------------------------------------------

    def window_studies(self, window: Window) -> list[Record]:
        """Every study-level record of the window, paged, kept only if exactly in it."""
        pages = self.client.study_pages(
            [(qido.STUDY_DATE, window.label)], fields=(*qido.STUDY_FIELDS, *PATIENT_FIELDS)
        )
        return [r for page in pages for r in page if qido.matches_criteria(r, window.criteria)]

    def discover(self) -> list[tuple[Window, dict[DicomPatient, PatientGroup]]]:
        found = []
        for window in self.windows:
            if self.checkpoint.window_done(window.label):
                self.report.windows_skipped += 1
                continue
            groups, without_id = group_by_patient(self.window_studies(window))
            if without_id:
                log.warning(
                    "studies without PatientID skipped",
                    extra={"window": window.label, "count": without_id},
                )
            found.append((window, groups))
        return found

    # -- per patient ----------------------------------------------------------------------

    def resolve_patient(self, group: PatientGroup) -> str | None:
        """The FHIR Patient id of this PACS patient (created if allowed), or None."""
        who, pacs = group.patient, self.options.pacs
        try:
            qido.check_match_value(who.patient_id, what="PatientID")
            if who.issuer is not None:
                qido.check_match_value(who.issuer, what="IssuerOfPatientID")
        except qido.RefusedValue:
            self._note("refused", f"{group.label}: its PatientID or issuer cannot be queried")
            return None
        record = group.record or {}
        ids = patients_of(self.fhir, self.pacs_settings, record, create=False)
        if len(ids) > 1:
            self._note("unresolved", f"{group.label}: more than one Patient: {', '.join(ids)}")
            return None
        if ids:
            return ids[0]
        if not self.options.create_patients:
            self._note("unresolved", f"{group.label}: no Patient has a mapped identifier")
            return None
        created = patients_of(self.fhir, self.pacs_settings, record, create=True)
        if not created:
            self._note(
                "unresolved",
                f"{group.label}: no identifier system of PACS {pacs!r} maps its issuer "
                "(SIDECAR_PATIENT_IDENTIFIERS)",
            )
            return None
        with self._report_lock:
            self.report.patients_created += 1
        return created[0]

    def sync_patient(self, window: Window, group: PatientGroup) -> bool:
        """One patient's studies of one window; outages are retried."""
        patient_retry = retry.policy(
            "backfill patient",
            attempts=self.options.attempts,
            retry_on=lambda exc: isinstance(exc, TRANSIENT),
            first_wait=self.options.retry_delay,
        )
        return patient_retry(self._sync_patient, window, group)

    def _sync_patient(self, window: Window, group: PatientGroup) -> bool:
        patient_id = self.resolve_patient(group)
        if patient_id is None:
            return False  # permanent until the data or the configuration changes: reported
        result = self.fetch(
            FetchRequest(
                patient_id=patient_id,
                study_date_ge=window.start,
                study_date_le=window.end,
                detail=self.options.detail,
            )
        )
        with self._report_lock:
            self.report.created += result.created
            self.report.updated += result.updated
            self.report.unchanged += result.unchanged
        return True

    def _note(self, kind: str, message: str) -> None:
        log.warning("backfill: patient %s", kind)  # the message may name a PatientID: report only
        with self._report_lock:
            getattr(self.report, kind).append(message)

    # -- the run --------------------------------------------------------------------------

    def run(self, *, progress: Callable[[int, int], Progress] | None = None) -> BackfillReport:
        started = time.monotonic()
        discovered = self.discover()  # study-level only: small, and gives the total
        todo = [
            (w, g)
            for w, groups in discovered
            for g in groups.values()
            if not self.checkpoint.patient_done(w.label, g.patient.key)
        ]
        done_before = self.checkpoint.instances_done
        total = done_before + sum(g.instances for _, g in todo)
        self.report.windows = len(self.windows)
        self.report.patients_skipped = sum(len(groups) for _, groups in discovered) - len(todo)
        shown = (progress or (lambda total, done: _Silent()))(total, done_before)
        left = {w.label: 0 for w, _ in discovered}
        for w, _ in todo:
            left[w.label] += 1
        groups_of = {w.label: groups for w, groups in discovered}
        for w, groups in discovered:
            if left[w.label] == 0:  # nothing (left) to do in it
                self._finish_window(w, groups)
        failed_windows: set[str] = set()
        try:
            with ThreadPoolExecutor(self.options.workers, thread_name_prefix="backfill") as pool:
                futures = {pool.submit(self.sync_patient, w, g): (w, g) for w, g in todo}
                for future in as_completed(futures):
                    window, group = futures[future]
                    try:
                        synced = future.result()
                    except (FetchError, OSError) as exc:
                        failed_windows.add(window.label)
                        self._note("failed", f"{group.label} [{window.label}]: {exc}")
                    else:
                        self.checkpoint.mark_patient(
                            window.label, group.patient.key, group.instances
                        )
                        if synced:
                            with self._report_lock:
                                self.report.patients += 1
                                self.report.studies += len(group.study_uids)
                                self.report.instances += group.instances
                    left[window.label] -= 1
                    if left[window.label] == 0 and window.label not in failed_windows:
                        self._finish_window(window, groups_of[window.label])
                    shown.update(
                        group.instances,
                        patients=self.report.patients,
                        failed=len(self.report.failed),
                    )
        finally:
            shown.close()
            self.report.seconds = time.monotonic() - started
        return self.report

    def _finish_window(self, window: Window, groups: dict[DicomPatient, PatientGroup]) -> None:
        self.checkpoint.mark_window(window.label, sum(g.instances for g in groups.values()))
