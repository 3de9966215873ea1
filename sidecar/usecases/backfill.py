"""Backfill: bring a whole PACS into FHIR, window by window, resumable after a kill.

    report = Backfill(fetch, options, data_dir=...).run()   # dicom-fhir sync --all

1. Walk the PACS by StudyDate windows (study-level QIDO, limit/offset paging), keeping only
   records the PACS returned for the window exactly (``qido.matches_criteria``).
2. Group each window's studies by exact (PatientID, IssuerOfPatientID). Values a PACS could
   read as matching syntax are refused with a warning (``qido.check_match_value``).
3. Pick the Patient.identifier system the PACS's identifier mapping gives that issuer, find
   the FHIR Patient by that identifier (optionally create it from the DICOM demographics with
   a conditional create, ``If-None-Exist``, so a resumed run creates no duplicates).
4. Run the shared use case per patient, narrowed to the window
   (``FetchRequest(patient_id=..., study_date_ge=..., study_date_le=...)``) on a bounded
   thread pool; it maps, diffs and writes one transaction per patient (idempotent).
5. After each patient, record it in a checkpoint file (JSON, replaced atomically); after
   each window, record the window. A rerun with the same parameters skips what is recorded.

Windows: ``--since``/``--until`` bound the walk; without ``--since`` a first, open-started
window covers everything before 2000-01-01, and without ``--until`` a last, open-ended window
covers dates after today. Studies without a StudyDate cannot be found by date and are not
backfilled (QIDO has no "empty" match).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sidecar.core import qido
from sidecar.core.fetch_request import FetchRequest
from sidecar.core.fhir_values import identifier_token
from sidecar.core.mapping import Detail, build_patient
from sidecar.core.outcome import FetchError, FhirUnavailable, PacsTimeout, PacsUnavailable
from sidecar.ports import FhirServer, Pacs, Record, Resource
from sidecar.settings import IdentifierMapping, PacsSettings
from sidecar.usecases.fetch_imaging import FetchImaging

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
DEFAULT_SINCE = date(2000, 1, 1)
DEFAULT_WINDOW_DAYS = 90
#: Patient tags asked for at study level (Orthanc returns the first four anyway).
PATIENT_FIELDS = ("00100010", "00100030", "00100040", qido.ISSUER_OF_PATIENT_ID)
#: Marks the Patients a backfill created (for audits and clean-up).
CREATED_TAG = {"system": "urn:dicom-fhir-sidecar:tag", "code": "created-by-backfill"}


# -- windows (pure) -----------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Window:
    """StudyDate from ``start`` to ``end``, both inclusive; None = open on that side."""

    start: date | None
    end: date | None

    @property
    def label(self) -> str:
        """``YYYYMMDD-YYYYMMDD`` as in a DICOM DA range (open sides empty)."""
        return qido.dicom_date_range(self.start, self.end) or "-"

    @property
    def criteria(self) -> qido.StudyCriteria:
        return qido.StudyCriteria(study_date_ge=self.start, study_date_le=self.end)


def date_windows(
    since: date | None, until: date | None, days: int, *, today: date | None = None
) -> list[Window]:
    """Consecutive, non-overlapping windows of ``days`` days covering ``since``..``until``.

    Without ``since`` the walk starts at 2000-01-01 after an open-started window for older
    studies; without ``until`` it ends today, followed by an open-ended window.
    """
    if days < 1:
        raise ValueError("window days must be at least 1")
    today = today or date.today()
    first = since or DEFAULT_SINCE
    last = until or today
    if last < first:
        raise ValueError(f"--until {last} is before --since {first}")
    windows: list[Window] = []
    if since is None:
        windows.append(Window(None, first - timedelta(days=1)))
    start = first
    while start <= last:
        end = min(start + timedelta(days=days - 1), last)
        windows.append(Window(start, end))
        start = end + timedelta(days=1)
    if until is None:
        windows.append(Window(last + timedelta(days=1), None))
    return windows


# -- which patient, which identifier (pure) -----------------------------------------------------


@dataclass(frozen=True)
class DicomPatient:
    """One exact (PatientID, IssuerOfPatientID) of a PACS."""

    patient_id: str
    issuer: str | None

    @property
    def key(self) -> str:
        return f"{self.patient_id}|{self.issuer or ''}"


@dataclass
class PatientGroup:
    """A window's studies of one DICOM patient, and a study-level record for demographics."""

    patient: DicomPatient
    study_uids: list[str] = field(default_factory=list)
    instances: int = 0
    record: Record | None = None


def identifier_mapping_for(pacs: PacsSettings, issuer: str | None) -> IdentifierMapping | None:
    """The identifier system of a DICOM patient of this PACS, per its identifier mappings.

    A mapping with this exact issuer wins. A mapping without issuer (values are PatientIDs
    alone) serves patients without issuer, and patients with an issuer only when the PACS
    maps no issuer at all: otherwise the same PatientID under two issuers would become one
    FHIR Patient. None: this patient cannot be given an identifier (refused with a warning).
    """
    exact = next((m for m in pacs.patient_identifiers if m.issuer == issuer), None)
    if exact is not None or issuer is None:
        return exact
    if all(m.issuer is None for m in pacs.patient_identifiers):
        return next(iter(pacs.patient_identifiers), None)
    return None


def group_by_patient(records: Iterable[Record]) -> tuple[dict[DicomPatient, PatientGroup], int]:
    """Studies grouped by exact PatientID + issuer; also how many records had no PatientID."""
    groups: dict[DicomPatient, PatientGroup] = {}
    without_id = 0
    for record in records:
        patient_id = qido.first_value(record, qido.PATIENT_ID)
        uid = qido.first_value(record, qido.STUDY_INSTANCE_UID)
        if not patient_id or not uid:
            without_id += 1
            continue
        who = DicomPatient(patient_id, qido.first_value(record, qido.ISSUER_OF_PATIENT_ID))
        group = groups.setdefault(who, PatientGroup(who, record=record))
        if uid not in group.study_uids:
            group.study_uids.append(uid)
            group.instances += _int(qido.first_value(record, "00201208"))
    return groups, without_id


def patient_resource(
    record: Record | None, mapping: IdentifierMapping, who: DicomPatient
) -> Resource:
    """The Patient a backfill creates: DICOM demographics, the mapped identifier only."""
    patient = build_patient(record) if record is not None else {"resourceType": "Patient"}
    patient["identifier"] = [{"system": mapping.system, "value": who.patient_id}]
    patient["meta"] = {"tag": [CREATED_TAG]}
    return patient


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


# -- checkpoint ---------------------------------------------------------------------------------


class Checkpoint:
    """Completed windows (with their instance counts) and, per open window, completed
    patients; one JSON file per PACS and parameters, replaced atomically on every save."""

    def __init__(self, path: Path, params: dict[str, Any]) -> None:
        self.path = path
        self.params = params
        self.windows: dict[str, int] = {}  # label -> instances
        self.patients: dict[str, dict[str, int]] = {}  # label -> patient key -> instances
        self._lock = threading.Lock()

    @staticmethod
    def path_for(data_dir: Path, pacs: str, params: dict[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
        return data_dir / "backfill" / f"{pacs}-{digest}.json"

    @classmethod
    def load(cls, path: Path, params: dict[str, Any], *, restart: bool = False) -> Checkpoint:
        checkpoint = cls(path, params)
        if restart or not path.exists():
            return checkpoint
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log.warning(
                "unreadable checkpoint ignored", extra={"path": str(path), "error": str(exc)}
            )
            return checkpoint
        if data.get("version") != CHECKPOINT_VERSION or data.get("params") != params:
            log.warning("checkpoint of other parameters ignored", extra={"path": str(path)})
            return checkpoint
        checkpoint.windows = {str(k): int(v) for k, v in data.get("windows", {}).items()}
        checkpoint.patients = {
            str(w): {str(k): int(v) for k, v in done.items()}
            for w, done in data.get("patients", {}).items()
        }
        return checkpoint

    def window_done(self, label: str) -> bool:
        return label in self.windows

    def patient_done(self, label: str, key: str) -> bool:
        return key in self.patients.get(label, {})

    @property
    def instances_done(self) -> int:
        return sum(self.windows.values()) + sum(
            sum(done.values()) for done in self.patients.values()
        )

    def mark_patient(self, label: str, key: str, instances: int) -> None:
        with self._lock:
            self.patients.setdefault(label, {})[key] = instances
            self._save()

    def mark_window(self, label: str, instances: int) -> None:
        with self._lock:
            self.windows[label] = instances
            self.patients.pop(label, None)
            self._save()

    def _save(self) -> None:
        data = {
            "version": CHECKPOINT_VERSION,
            "params": self.params,
            "windows": self.windows,
            "patients": self.patients,
            "saved_at": time.time(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(data, out, indent=1, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)  # atomic: a kill leaves the old or the new file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# -- progress -----------------------------------------------------------------------------------


class Progress:
    """tqdm with rate and ETA on a terminal; a plain log line every ``interval`` s otherwise."""

    def __init__(self, total: int, initial: int, *, unit: str = "inst", interval: float = 10.0):
        self.total = total
        self.count = initial
        self.started = time.monotonic()
        self.initial = initial
        self.interval = interval
        self._last = 0.0
        self._lock = threading.Lock()
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=initial, unit=unit, unit_scale=True, smoothing=0.1
            )

    def update(self, n: int, **postfix: Any) -> None:
        with self._lock:
            self.count += n
            if self._bar is not None:
                self._bar.update(n)
                if postfix:
                    self._bar.set_postfix(postfix, refresh=False)
                return
            now = time.monotonic()
            if now - self._last >= self.interval or self.count >= self.total:
                self._last = now
                print(self.line(now, postfix), file=sys.stderr, flush=True)

    def line(self, now: float, postfix: dict[str, Any]) -> str:
        elapsed = max(now - self.started, 1e-6)
        rate = (self.count - self.initial) / elapsed
        left = max(self.total - self.count, 0)
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        extra = "".join(f" {k}={v}" for k, v in postfix.items())
        return (
            f"backfill: {self.count}/{self.total} instances, {rate:.0f}/s, "
            f"elapsed {elapsed:.0f}s, ETA {eta}{extra}"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# -- the backfill -------------------------------------------------------------------------------


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


class Backfill:
    """One backfill run over one PACS. ``fetch`` is the shared use case."""

    def __init__(
        self,
        fetch: FetchImaging,
        options: BackfillOptions,
        *,
        data_dir: Path,
        today: date | None = None,
    ) -> None:
        self.fetch = fetch
        self.options = options
        self.settings = fetch.settings
        self.pacs_settings = self.settings.pacs[options.pacs]
        self.client: Pacs = fetch.pacs[options.pacs]
        self.fhir: FhirServer = fetch.fhir
        self.windows = date_windows(options.since, options.until, options.window_days, today=today)
        self.checkpoint = Checkpoint.load(
            Checkpoint.path_for(data_dir, options.pacs, options.checkpoint_params()),
            options.checkpoint_params(),
            restart=options.restart,
        )
        self.report = BackfillReport(checkpoint=str(self.checkpoint.path))
        self._report_lock = threading.Lock()

    # -- discovery ------------------------------------------------------------------------

    def window_studies(self, window: Window) -> list[Record]:
        """Every study-level record of the window, paged, kept only if exactly in it."""
        pages = self.client.study_pages(
            [(qido.STUDY_DATE, window.label)], fields=(*qido.STUDY_FIELDS, *PATIENT_FIELDS)
        )
        return [r for page in pages for r in page if qido.matches_criteria(r, window.criteria)]

    def discover(self) -> Iterator[tuple[Window, dict[DicomPatient, PatientGroup]]]:
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
            yield window, groups

    # -- per patient ----------------------------------------------------------------------

    def resolve_patient(self, who: DicomPatient, record: Record | None) -> str | None:
        """The FHIR Patient id for this DICOM patient (created if allowed), or None."""
        try:
            qido.check_match_value(who.patient_id, what="PatientID")
            if who.issuer is not None:
                qido.check_match_value(who.issuer, what="IssuerOfPatientID")
        except qido.RefusedValue as exc:
            self._note("refused", f"{who.key}: {exc}")
            return None
        mapping = identifier_mapping_for(self.pacs_settings, who.issuer)
        if mapping is None:
            self._note(
                "unresolved",
                f"{who.key}: no identifier system of PACS {self.options.pacs!r} maps issuer "
                f"{who.issuer!r} (SIDECAR_PATIENT_IDENTIFIERS)",
            )
            return None
        token = f"{mapping.system}|{who.patient_id}"
        found = self.fhir.find_patients(identifier_token(mapping.system, who.patient_id))
        if len(found) > 1:
            self._note("unresolved", f"{who.key}: more than one Patient has identifier {token}")
            return None
        if found:
            return str(found[0]["id"])
        if not self.options.create_patients:
            self._note("unresolved", f"{who.key}: no Patient has identifier {token}")
            return None
        patient_id, created = create_patient_if_none_exist(
            self.fhir, patient_resource(record, mapping, who), mapping.system, who.patient_id
        )
        if created:
            with self._report_lock:
                self.report.patients_created += 1
            log.info("Patient created", extra={"patient_id": patient_id, "pacs": self.options.pacs})
        return patient_id

    def sync_patient(self, window: Window, group: PatientGroup) -> bool:
        """One patient's studies of one window; transient failures are retried."""
        for attempt in range(1, self.options.attempts + 1):
            try:
                return self._sync_patient(window, group)
            except (FhirUnavailable, PacsUnavailable, PacsTimeout) as exc:
                if attempt == self.options.attempts:
                    raise
                delay = self.options.retry_delay * 2 ** (attempt - 1)
                log.info("retrying a patient", extra={"error": str(exc), "delay": delay})
                time.sleep(delay)

    def _sync_patient(self, window: Window, group: PatientGroup) -> bool:
        who = group.patient
        patient_id = self.resolve_patient(who, group.record)
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
        log.warning("backfill: patient %s", kind, extra={"detail": message})
        with self._report_lock:
            getattr(self.report, kind).append(message)

    # -- the run --------------------------------------------------------------------------

    def run(
        self, *, progress_factory: Callable[[int, int], Progress] | None = None
    ) -> BackfillReport:
        started = time.monotonic()
        discovered = list(self.discover())  # study-level only: small, and gives the total
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
        progress = (progress_factory or Progress)(total, done_before)
        left = {w.label: 0 for w, _ in discovered}
        for w, _ in todo:
            left[w.label] += 1
        for w, groups in discovered:
            if left[w.label] == 0:  # nothing (left) to do in it
                self._finish_window(w, groups)
        failed_windows: set[str] = set()
        try:
            with ThreadPoolExecutor(self.options.workers, thread_name_prefix="backfill") as pool:
                futures: dict[Future, tuple[Window, PatientGroup]] = {}
                queue = iter(todo)
                window_groups = {w.label: g for w, g in discovered}
                while True:
                    while len(futures) < self.options.workers * 2:
                        item = next(queue, None)
                        if item is None:
                            break
                        futures[pool.submit(self.sync_patient, *item)] = item
                    if not futures:
                        break
                    finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in finished:
                        window, group = futures.pop(future)
                        try:
                            synced = future.result()
                        except (FetchError, OSError) as exc:
                            failed_windows.add(window.label)
                            self._note("failed", f"{group.patient.key} [{window.label}]: {exc}")
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
                            self._finish_window(window, window_groups[window.label])
                        progress.update(
                            group.instances,
                            patients=self.report.patients,
                            failed=len(self.report.failed),
                        )
        finally:
            progress.close()
            self.report.seconds = time.monotonic() - started
        return self.report

    def _finish_window(self, window: Window, groups: dict[DicomPatient, PatientGroup]) -> None:
        self.checkpoint.mark_window(window.label, sum(g.instances for g in groups.values()))


# -- FHIR write helper --------------------------------------------------------------------------


def create_patient_if_none_exist(
    store: FhirServer, patient: Resource, system: str, value: str
) -> tuple[str, bool]:
    """Conditional create (``If-None-Exist: identifier=system|value``): the id of the Patient
    with this identifier, and whether this call created it. Idempotent across kills."""
    token = identifier_token(system, value)
    patient_id, created = store.create_if_none_exist(patient, f"identifier={token}")
    if patient_id:
        return patient_id, created
    found = store.find_patients(token)  # a server may not say where the match is
    if len(found) != 1:
        raise FetchError(
            f"conditional create of Patient identifier={token} left {len(found)} matches"
        )
    return str(found[0]["id"]), created
