"""``dicom-fhir convert``: DICOM files and folders -> one FHIR R4 Bundle of ImagingStudy.

Headers only are read (``stop_before_pixels`` and ``specific_tags`` limited to the tags
the mapping uses), in a process pool across cores. Workers return the mapping's small
per-record :class:`~sidecar.core.mapping.Facts`, never Datasets, and the parent merges them
per StudyInstanceUID, so the result does not depend on file order or chunking.

Transaction bundles are idempotent: ImagingStudy entries are ``PUT ImagingStudy/{id}``
with the deterministic id of :func:`~sidecar.core.mapping.imaging_study_id`; Patients built
from the headers (when no ``--patient`` is given) are conditional creates on their
identifier (``ifNoneExist``) when that identifier has a system, else a ``PUT`` on a
deterministic id of (PatientID, IssuerOfPatientID): a search on ``identifier=|value``
cannot tell two issuers apart (the issuer is only ``assigner.display``), and HAPI would
merge their Patients into one. Posting the same bundle twice creates nothing twice.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from sidecar.core.mapping import Detail, Facts, StudyAssembler, build_patient, extract
from sidecar.core.mapping.extract import _Reader, patient_identity
from sidecar.core.mapping.source import DatasetRecord
from sidecar.core.mapping.tags import MAPPING_TAGS
from sidecar.core.mapping.timing import load_zone

#: Media Storage Directory Storage (PS3.10 DICOMDIR): an index, not an instance.
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
_NAMESPACE = uuid.UUID("6f1b3c52-1f0e-4a8e-9d57-6c2b0c1d9e11")  # this tool's uuid5 namespace
_SPECIFIC_TAGS = list(MAPPING_TAGS)


@dataclass
class ConvertSummary:
    """Counts of one conversion (printed to stderr by the CLI; no patient data)."""

    files: int = 0
    dicom_files: int = 0
    non_dicom: int = 0
    unreadable: int = 0
    dicomdir: int = 0
    studies: int = 0
    series: int = 0
    instances: int = 0
    seconds: float = 0.0
    issues: list[dict[str, Any]] = field(default_factory=list)

    def lines(self, max_issues: int = 20) -> list[str]:
        """Human-readable summary lines."""
        rate = self.dicom_files / self.seconds if self.seconds > 0 else 0.0
        out = [
            f"files: {self.files} (DICOM {self.dicom_files}, non-DICOM skipped "
            f"{self.non_dicom}, unreadable {self.unreadable}, DICOMDIR {self.dicomdir})",
            f"studies: {self.studies}, series: {self.series}, instances: {self.instances}",
            f"time: {self.seconds:.2f} s ({rate:.0f} files/s), warnings: {len(self.issues)}",
        ]
        for issue in self.issues[:max_issues]:
            out.append(f"  warning: {issue['diagnostics']}")
        if len(self.issues) > max_issues:
            out.append(f"  ... {len(self.issues) - max_issues} more warnings")
        return out


# --------------------------------------------------------------------------------------------
# Finding files
# --------------------------------------------------------------------------------------------


def _dicomdir_files(path: Path) -> list[Path] | None:
    """Files referenced by a DICOMDIR (PS3.10 File-set), or None if it cannot be read."""
    try:
        from pydicom.fileset import FileSet

        fs = FileSet(pydicom.dcmread(path))
        return [Path(instance.path) for instance in fs]
    except Exception:
        return None


def iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Every file under *paths*, sorted, each once.

    A folder is walked whole; a DICOMDIR given directly lists the files it references
    (a DICOMDIR met while walking is skipped later: the walk already finds its files).
    """
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            candidates: Iterable[Path] = sorted(p for p in path.rglob("*") if p.is_file())
        elif path.name.upper() == "DICOMDIR" and path.is_file():
            referenced = _dicomdir_files(path)
            candidates = [path] if referenced is None else [path, *sorted(referenced)]
        else:
            candidates = [path]
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                yield candidate


# --------------------------------------------------------------------------------------------
# Reading (runs in worker processes)
# --------------------------------------------------------------------------------------------

#: Per-file outcome kinds.
OK, NON_DICOM, UNREADABLE, DICOMDIR = "ok", "non-dicom", "unreadable", "dicomdir"


@dataclass
class ChunkResult:
    """What a worker sends back for a chunk of files."""

    kinds: dict[str, int] = field(default_factory=dict)
    facts: list[Facts] = field(default_factory=list)
    patients: dict[tuple[str | None, str | None], dict[str, Any]] = field(default_factory=dict)


def read_header(path: str | os.PathLike[str]) -> pydicom.Dataset:
    """The mapping's tags of one file, pixel data and everything else left unread."""
    return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_SPECIFIC_TAGS)


def read_chunk(paths: Sequence[str], timezone: str | None, with_patients: bool) -> ChunkResult:
    """Read and extract a chunk of files (a process-pool task)."""
    zone = load_zone(timezone) if timezone else None
    result = ChunkResult()
    kinds = result.kinds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's value warnings become our issues
        for path in paths:
            try:
                ds = read_header(path)
            except (InvalidDicomError, IsADirectoryError):
                kinds[NON_DICOM] = kinds.get(NON_DICOM, 0) + 1
                continue
            except Exception:
                kinds[UNREADABLE] = kinds.get(UNREADABLE, 0) + 1
                continue
            meta = getattr(ds, "file_meta", None)
            if meta is not None and meta.get("MediaStorageSOPClassUID") == DICOMDIR_SOP_CLASS:
                kinds[DICOMDIR] = kinds.get(DICOMDIR, 0) + 1
                continue
            kinds[OK] = kinds.get(OK, 0) + 1
            record = DatasetRecord(ds)
            facts = extract(record, zone)
            result.facts.append(facts)
            if with_patients and facts.study_uid is not None:
                key = patient_identity(_Reader(record, []))
                if key == (None, None):
                    key = (None, facts.study_uid)  # no PatientID: one Patient per study
                if key not in result.patients:
                    result.patients[key] = build_patient(ds)
    return result


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# --------------------------------------------------------------------------------------------
# Bundle
# --------------------------------------------------------------------------------------------


def _patient_entry(
    key: tuple[str | None, str | None], patient: dict[str, Any], bundle_type: str
) -> tuple[str, dict[str, Any]]:
    """(reference, Bundle entry) for a Patient built from the headers."""
    full_url = f"urn:uuid:{uuid.uuid5(_NAMESPACE, json.dumps(key))}"
    entry: dict[str, Any] = {"fullUrl": full_url, "resource": patient}
    if bundle_type == "transaction":
        identifiers = patient.get("identifier") or []
        if identifiers and identifiers[0].get("system"):
            ident = identifiers[0]
            token = f"{ident['system']}|{ident['value']}"
            entry["request"] = {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": f"identifier={token}",
            }
        else:  # no PatientID, or an issuer that is not a URI/OID: the key decides
            patient_id = "dcm-pt-" + uuid.uuid5(_NAMESPACE, json.dumps(key)).hex[:24]
            patient["id"] = patient_id
            entry["request"] = {"method": "PUT", "url": f"Patient/{patient_id}"}
    return full_url, entry


def build_bundle(
    studies: list[dict[str, Any]],
    patient_entries: list[dict[str, Any]],
    bundle_type: str,
) -> dict[str, Any]:
    """A collection or (idempotent) transaction Bundle of Patients then ImagingStudies."""
    entries = list(patient_entries)
    for study in studies:
        # Every entry has a fullUrl: R4 allows it to be left out only on a POST, and HAPI's
        # Bundle validation rejects a transaction PUT entry without one.
        full_url = f"urn:uuid:{uuid.uuid5(_NAMESPACE, 'ImagingStudy/' + study['id'])}"
        entry: dict[str, Any] = {"fullUrl": full_url, "resource": study}
        if bundle_type == "transaction":
            entry["request"] = {"method": "PUT", "url": f"ImagingStudy/{study['id']}"}
        entries.append(entry)
    return {"resourceType": "Bundle", "type": bundle_type, "entry": entries}


def convert_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    patient_reference: str | None = None,
    timezone: str | None = None,
    bundle_type: str = "collection",
    progress: bool = False,
    workers: int | None = None,
    chunk_size: int = 64,
    detail: Detail = Detail.INSTANCE,
    accession_system: str | None = None,
) -> tuple[dict[str, Any], ConvertSummary]:
    """Convert DICOM files/folders to a FHIR Bundle; returns ``(bundle, summary)``.

    *patient_reference* (e.g. ``"Patient/123"``) becomes every study's subject; without
    it, Patients are built from the headers and included in the bundle. *timezone* is
    the IANA zone of times without TimezoneOffsetFromUTC. *workers* defaults to the CPU
    count; 1 reads in this process.
    """
    if bundle_type not in ("collection", "transaction"):
        raise ValueError(f"bundle_type must be collection or transaction, not {bundle_type!r}")
    if timezone:
        load_zone(timezone)  # fail fast on a bad zone, before any work
    started = time.perf_counter()
    files = [os.fspath(p) for p in iter_files(paths)]
    summary = ConvertSummary(files=len(files))
    workers = workers or os.cpu_count() or 1
    chunks = _chunks(files, max(1, chunk_size))
    with_patients = patient_reference is None

    from tqdm import tqdm

    bar = tqdm(total=len(files), unit="file", disable=not progress, file=sys.stderr)
    assembler = StudyAssembler()
    patients: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    kinds: dict[str, int] = {}

    def consume(result: ChunkResult, n_files: int) -> None:
        for kind, n in result.kinds.items():
            kinds[kind] = kinds.get(kind, 0) + n
        for facts in result.facts:
            assembler.add(facts)
        for key, patient in result.patients.items():
            current = patients.get(key)
            # identical keys from different files: keep a deterministic choice
            if current is None or json.dumps(patient, sort_keys=True) < json.dumps(
                current, sort_keys=True
            ):
                patients[key] = patient
        bar.update(n_files)

    try:
        if workers <= 1 or len(chunks) <= 1:
            for chunk in chunks:
                consume(read_chunk(chunk, timezone, with_patients), len(chunk))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                results = pool.map(
                    read_chunk,
                    chunks,
                    [timezone] * len(chunks),
                    [with_patients] * len(chunks),
                )
                for chunk, result in zip(chunks, results, strict=True):
                    consume(result, len(chunk))
    finally:
        bar.close()

    patient_entries: list[dict[str, Any]] = []
    subjects: dict[str, dict[str, Any]] = {}
    subject = {"reference": patient_reference} if patient_reference else None
    if with_patients:
        references: dict[tuple[str | None, str | None], str] = {}
        for key in sorted(patients, key=lambda k: json.dumps(k)):
            reference, entry = _patient_entry(key, patients[key], bundle_type)
            references[key] = reference
            patient_entries.append(entry)
        for study_uid, key in assembler.patient_keys().items():
            if key == (None, None):
                key = (None, study_uid)
            if key in references:
                subjects[study_uid] = {"reference": references[key]}

    mapped = assembler.build(
        subject=subject, subjects=subjects, accession_system=accession_system, detail=detail
    )
    bundle = build_bundle(mapped.studies, patient_entries, bundle_type)

    summary.dicom_files = kinds.get(OK, 0)
    summary.non_dicom = kinds.get(NON_DICOM, 0)
    summary.unreadable = kinds.get(UNREADABLE, 0)
    summary.dicomdir = kinds.get(DICOMDIR, 0)
    summary.studies = len(mapped.studies)
    for study in mapped.studies:
        summary.series += study.get("numberOfSeries", 0)
        summary.instances += study.get("numberOfInstances", 0)
    summary.issues = mapped.issues
    summary.seconds = time.perf_counter() - started
    return bundle, summary


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def add_convert_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``convert`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "convert",
        help="convert DICOM files/folders to a FHIR R4 Bundle of ImagingStudy",
        description="Read DICOM headers (files, folders, DICOMDIR) and write a FHIR R4 Bundle.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="DICOM file, folder or DICOMDIR")
    parser.add_argument("--out", metavar="FILE", help="write the Bundle here (default: stdout)")
    parser.add_argument(
        "--bundle",
        choices=("collection", "transaction"),
        default="collection",
        help="Bundle type; transaction uses idempotent PUT/conditional create",
    )
    parser.add_argument("--patient", metavar="Patient/ID", help="subject reference for every study")
    parser.add_argument(
        "--timezone",
        metavar="ZONE",
        help="IANA zone of times without TimezoneOffsetFromUTC, e.g. Europe/Zurich",
    )
    parser.add_argument(
        "--detail",
        choices=[d.value for d in Detail],
        default=Detail.INSTANCE.value,
        help="study, series or instance level ImagingStudy",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPUs)")
    parser.add_argument("--pretty", action="store_true", help="indent the JSON output")
    parser.set_defaults(func=run_convert)
    return parser


def run_convert(args: argparse.Namespace) -> int:
    """Execute ``convert``; returns the process exit code."""
    try:
        bundle, summary = convert_paths(
            args.paths,
            patient_reference=args.patient,
            timezone=args.timezone,
            bundle_type=args.bundle,
            progress=sys.stderr.isatty(),
            workers=args.workers,
            detail=Detail(args.detail),
        )
    except ValueError as exc:
        print(f"dicom-fhir convert: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(bundle, sort_keys=True, ensure_ascii=False, indent=2 if args.pretty else None)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")
    for line in summary.lines():
        print(line, file=sys.stderr)
    return 0 if summary.dicom_files or not summary.files else 1
