"""``dicom-fhir convert``: DICOM files and folders -> one FHIR R4 Bundle of ImagingStudy.

Each file is read once, in a process pool across cores: every element's header, values
longer than :data:`DEFER_BYTES` (pixel data) left on disk. That reads about as fast as the
mapping's tags alone (``specific_tags``), and it shows a file that is shorter than its
elements declare (:func:`truncation`). Workers return the mapping's small per-record
:class:`~sidecar.core.mapping.Facts`, never Datasets, and the parent merges them per
StudyInstanceUID, so the result does not depend on file order or chunking.

Every file left out is named, with why (missing, unreadable, not DICOM, no UIDs,
truncated), on stderr and in the OperationOutcome; which entries the Bundle gets, and why a
transaction never invents a Patient id, is :mod:`sidecar.core.convert_bundle`. ``--out`` is
checked before any file is read and written atomically. docs/convert.md is the user's
side of this.
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
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError

from sidecar.core import convert_bundle as cb
from sidecar.core.convert_bundle import HeaderKey, SkippedFile
from sidecar.core.mapping import (
    Detail,
    Facts,
    StudyAssembler,
    build_patient,
    extract,
    patient_key,
    study_uid_of,
)
from sidecar.core.mapping.outcome import tag_name
from sidecar.core.mapping.source import DatasetRecord
from sidecar.core.mapping.tags import SERIES_INSTANCE_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID
from sidecar.core.mapping.timing import load_zone
from sidecar.core.outcome import operation_outcome
from sidecar.settings import IdentifierMapping
from sidecar.settings.models import parse_identifier_mappings

#: Media Storage Directory Storage (PS3.10 DICOMDIR): an index, not an instance.
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
#: Values longer than this stay on disk (pixel data); the mapping's are shorter (a longer
#: one is read from the file when the mapping asks for it).
DEFER_BYTES = 64 * 1024
#: Value Length (PS3.5 7.1.1) of an element whose end is its delimitation item.
UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass
class ConvertSummary:
    """Counts of one conversion and what was left out (printed to stderr by the CLI: paths,
    UIDs and issuers, never a PatientID, name or birth date)."""

    files: int = 0
    dicom_files: int = 0  # converted: read whole, with their UIDs
    non_dicom: int = 0
    missing: int = 0
    unreadable: int = 0
    truncated: int = 0
    no_uids: int = 0
    dicomdir: int = 0
    studies: int = 0
    series: int = 0
    instances: int = 0
    seconds: float = 0.0
    skipped: list[SkippedFile] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # a transaction's patients left out
    issues: list[dict[str, Any]] = field(default_factory=list)  # the mapping's warnings
    outcome: dict[str, Any] | None = None  # all of the above as one OperationOutcome

    @property
    def complete(self) -> bool:
        """Whether every DICOM instance found is in the Bundle (non-DICOM files aside)."""
        return not self.left_out and not any(s.is_loss for s in self.skipped)

    def lines(self, max_issues: int = 20) -> list[str]:
        """Human-readable summary lines: every skipped file and patient left out, the
        mapping's warnings up to *max_issues*."""
        rate = self.dicom_files / self.seconds if self.seconds > 0 else 0.0
        out = [
            f"files: {self.files} (DICOM {self.dicom_files}, non-DICOM skipped "
            f"{self.non_dicom}, missing {self.missing}, unreadable {self.unreadable}, "
            f"truncated {self.truncated}, no UIDs {self.no_uids}, DICOMDIR {self.dicomdir})",
            f"studies: {self.studies}, series: {self.series}, instances: {self.instances}",
            f"time: {self.seconds:.2f} s ({rate:.0f} files/s), warnings: {len(self.issues)}",
        ]
        out += [f"  skipped: {skip.line()}" for skip in self.skipped]
        out += [f"  left out: {line}" for line in self.left_out]
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

#: What became of one file (the summary's counts); the skip reasons are convert_bundle's.
OK, DICOMDIR = "ok", "dicomdir"


@dataclass
class ChunkResult:
    """What a worker sends back for a chunk of files."""

    kinds: dict[str, int] = field(default_factory=dict)
    skipped: list[SkippedFile] = field(default_factory=list)
    facts: list[Facts] = field(default_factory=list)
    patients: dict[HeaderKey, dict[str, Any]] = field(default_factory=dict)
    first_files: dict[str, str] = field(default_factory=dict)  # study UID -> first path

    def count(self, kind: str) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def skip(self, skipped: SkippedFile) -> None:
        self.count(skipped.reason)
        self.skipped.append(skipped)


def read_header(path: str | os.PathLike[str]) -> pydicom.Dataset:
    """Every element of one file with its offset and length; values longer than
    :data:`DEFER_BYTES` (pixel data) are left unread until asked for."""
    return pydicom.dcmread(path, defer_size=DEFER_BYTES)


def truncation(ds: pydicom.Dataset, size: int) -> str | None:
    """Why a file holds less than its elements declare, or None.

    Each element of defined length declares where its value ends (its offset plus Value
    Length, PS3.5 7.1.1): one that ends past the end of the file was cut off (an interrupted
    copy, usually in PixelData (7FE0,0010)). pydicom stops silently when the file ends inside
    an element's header, and drops everything when it ends inside a value of undefined
    length: then bytes are left after the last element it read. A deflated transfer syntax
    (PS3.5 A.5) has its offsets in the inflated stream: not checked.
    """
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and syntax.is_deflated:
        return None
    last: tuple[int, int, int | None] | None = None  # (offset, tag, end) of the last element
    for dataset in (meta, ds):
        for tag in dataset.keys() if dataset is not None else ():
            offset, end = _extent(dataset.get_item(tag, keep_deferred=True))
            if end is not None and end > size:
                return (
                    f"{tag_name(tag)} declares {end - offset} bytes from byte {offset}, the file "
                    f"ends at byte {size} ({end - size} bytes missing)"
                )
            if last is None or offset > last[0]:
                last = (offset, tag, end)
    if last is not None and last[2] is not None and last[2] < size:
        unread = size - last[2]
        after = tag_name(last[1])
        return (
            f"the file ends inside an element: its last {unread} bytes (after {after}) "
            "hold no whole one"
        )
    return None


def _extent(element: Any) -> tuple[int, int | None]:
    """(offset of the value, offset after it or None when unknown) of an element read by
    pydicom: a raw element keeps its declared length, a decoded one (the character set, a
    sequence of undefined length) only its offset."""
    if isinstance(element, RawDataElement):
        end = None if element.length == UNDEFINED_LENGTH else element.value_tell + element.length
        return element.value_tell, end
    return getattr(element, "file_tell", None) or 0, None


def read_file(path: str) -> pydicom.Dataset | SkippedFile:
    """One file's Dataset, or why it is skipped (the exception's kind, never its message:
    pydicom's may quote a value, such as a name)."""
    try:
        size = os.path.getsize(path)
        ds = read_header(path)
    except FileNotFoundError:
        return SkippedFile(path, cb.MISSING, "no such file")
    except (InvalidDicomError, IsADirectoryError):
        return SkippedFile(path, cb.NOT_DICOM, "no DICOM File Meta Information (PS3.10 7.1)")
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno:  # the system's: permission denied, EIO
            return SkippedFile(path, cb.UNREADABLE, str(exc.strerror))
        why = f"its DICOM data cannot be parsed ({type(exc).__name__})"
        return SkippedFile(path, cb.UNREADABLE, why)
    cut = truncation(ds, size)
    return SkippedFile(path, cb.TRUNCATED, cut) if cut else ds


def missing_uid(facts: Facts) -> str:
    """The first UID (study, series, instance) a record lacks: it cannot be an instance."""
    for tag, uid in (
        (STUDY_INSTANCE_UID, facts.study_uid),
        (SERIES_INSTANCE_UID, facts.series_uid),
        (SOP_INSTANCE_UID, facts.sop_uid),
    ):
        if uid is None:
            return f"{tag_name(tag)} missing or not a UID (PS3.5 9.1)"
    return "none"


def header_key(key: HeaderKey, study_uid: str) -> HeaderKey:
    """A record's patient: (PatientID, IssuerOfPatientID), or (None, its study) without a
    PatientID: one Patient per such study rather than one for all of them."""
    return key if key[0] is not None else (None, study_uid)


def read_chunk(paths: Sequence[str], timezone: str | None, with_patients: bool) -> ChunkResult:
    """Read and extract a chunk of files (a process-pool task)."""
    zone = load_zone(timezone) if timezone else None
    result = ChunkResult()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's value warnings become our issues
        for path in paths:
            ds = read_file(path)
            if isinstance(ds, SkippedFile):
                result.skip(ds)
                continue
            meta = getattr(ds, "file_meta", None)
            if meta is not None and meta.get("MediaStorageSOPClassUID") == DICOMDIR_SOP_CLASS:
                result.count(DICOMDIR)
                continue
            facts = extract(DatasetRecord(ds), zone)
            if facts.sop_uid is None:  # not an instance: nothing of it goes in
                result.skip(SkippedFile(path, cb.NO_UIDS, missing_uid(facts)))
                continue
            result.count(OK)
            result.facts.append(facts)
            result.first_files.setdefault(facts.study_uid, path)
            if with_patients:
                key = header_key(patient_key(ds), facts.study_uid)
                if key not in result.patients:
                    result.patients[key] = build_patient(ds)
    return result


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass
class Gathered:
    """The workers' chunks added up, in the parent."""

    assembler: StudyAssembler = field(default_factory=StudyAssembler)
    kinds: dict[str, int] = field(default_factory=dict)
    skipped: list[SkippedFile] = field(default_factory=list)
    patients: dict[HeaderKey, dict[str, Any]] = field(default_factory=dict)
    first_files: dict[str, str] = field(default_factory=dict)

    def add(self, result: ChunkResult) -> None:
        for kind, n in result.kinds.items():
            self.kinds[kind] = self.kinds.get(kind, 0) + n
        self.skipped += result.skipped
        for facts in result.facts:
            self.assembler.add(facts)
        for study_uid, path in result.first_files.items():
            self.first_files.setdefault(study_uid, path)  # chunks come in file order
        for key, patient in result.patients.items():
            current = self.patients.get(key)
            # identical keys from different files: keep a deterministic choice
            if current is None or json.dumps(patient, sort_keys=True) < json.dumps(
                current, sort_keys=True
            ):
                self.patients[key] = patient

    def study_patients(self) -> dict[str, HeaderKey]:
        """Study UID -> its patient's key (what the studies' records agree on)."""
        return {uid: header_key(key, uid) for uid, key in self.assembler.patient_keys().items()}


def read_all(
    files: Sequence[str],
    *,
    timezone: str | None,
    with_patients: bool,
    workers: int,
    chunk_size: int,
    progress: bool,
) -> Gathered:
    """Read every file, in this process (one worker or one chunk) or in a process pool."""
    from tqdm import tqdm

    chunks = _chunks(files, max(1, chunk_size))
    gathered = Gathered()
    with ExitStack() as stack:
        bar = stack.enter_context(
            tqdm(total=len(files), unit="file", disable=not progress, file=sys.stderr)
        )
        in_process = workers <= 1 or len(chunks) <= 1
        run = map if in_process else stack.enter_context(ProcessPoolExecutor(workers)).map
        results = run(read_chunk, chunks, repeat(timezone), repeat(with_patients))
        for chunk, result in zip(chunks, results, strict=True):
            gathered.add(result)
            bar.update(len(chunk))
    return gathered


def convert_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    patient_reference: str | None = None,
    timezone: str | None = None,
    bundle_type: str = cb.COLLECTION,
    progress: bool = False,
    workers: int | None = None,
    chunk_size: int = 64,
    detail: Detail = Detail.INSTANCE,
    accession_system: str | None = None,
    patient_identifiers: Sequence[IdentifierMapping] = (),
) -> tuple[dict[str, Any], ConvertSummary]:
    """Convert DICOM files/folders to a FHIR Bundle; returns ``(bundle, summary)``.

    *patient_reference* (e.g. ``"Patient/123"``) becomes every study's subject; without
    it, Patients are built from the headers and included in the bundle, identified by
    *patient_identifiers* (the ``--patient-identifiers`` mappings; a transaction leaves out
    the patients none covers, :mod:`sidecar.core.convert_bundle`). *timezone* is the IANA
    zone of times without TimezoneOffsetFromUTC. *workers* defaults to the CPU count; 1
    reads in this process.
    """
    if bundle_type not in (cb.COLLECTION, cb.TRANSACTION):
        raise ValueError(f"bundle_type must be collection or transaction, not {bundle_type!r}")
    if timezone:
        load_zone(timezone)  # fail fast on a bad zone, before any work
    started = time.perf_counter()
    files = [os.fspath(p) for p in iter_files(paths)]
    with_patients = patient_reference is None
    gathered = read_all(
        files,
        timezone=timezone,
        with_patients=with_patients,
        workers=workers or os.cpu_count() or 1,
        chunk_size=chunk_size,
        progress=progress,
    )
    plan = cb.PatientPlan()
    if with_patients:
        study_patients = gathered.study_patients()
        plan = cb.plan_patients(gathered.patients, study_patients, bundle_type, patient_identifiers)
    subject = {"reference": patient_reference} if patient_reference else None
    mapped = gathered.assembler.build(
        subject=subject, subjects=plan.subjects, accession_system=accession_system, detail=detail
    )
    left_out = plan.left_out_studies
    studies = [s for s in mapped.studies if study_uid_of(s) not in left_out]
    skipped = sorted(gathered.skipped)
    outcome = cb.conversion_outcome(skipped, plan.left_out, mapped.issues, gathered.first_files)
    bundle = cb.build_bundle(studies, plan.entries, bundle_type, outcome)

    summary = ConvertSummary(files=len(files), skipped=skipped, issues=mapped.issues)
    summary.left_out = [item.line(gathered.first_files) for item in plan.left_out]
    summary.outcome = outcome
    _count(summary, gathered.kinds, studies)
    summary.seconds = time.perf_counter() - started
    return bundle, summary


def _count(summary: ConvertSummary, kinds: dict[str, int], studies: list[dict[str, Any]]) -> None:
    summary.dicom_files = kinds.get(OK, 0)
    summary.non_dicom = kinds.get(cb.NOT_DICOM, 0)
    summary.missing = kinds.get(cb.MISSING, 0)
    summary.unreadable = kinds.get(cb.UNREADABLE, 0)
    summary.truncated = kinds.get(cb.TRUNCATED, 0)
    summary.no_uids = kinds.get(cb.NO_UIDS, 0)
    summary.dicomdir = kinds.get(DICOMDIR, 0)
    summary.studies = len(studies)
    for study in studies:
        summary.series += study.get("numberOfSeries", 0)
        summary.instances += study.get("numberOfInstances", 0)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

#: Exit codes: the Bundle has every DICOM instance found; the Bundle was written but lacks
#: some (a file skipped, a patient left out) or no DICOM was found; an argument or an
#: output file was refused, no Bundle was written.
EXIT_COMPLETE, EXIT_INCOMPLETE, EXIT_NOTHING_WRITTEN = 0, 1, 2


class OutputError(Exception):
    """An output file that cannot be written: one line for the user."""


class AtomicFile:
    """A file that appears whole or not at all: written to a temporary file beside it (the
    same file system) and renamed over it.

    Creating it checks at once, before any DICOM file is read, that the directory exists
    and can be written: a temporary file is created there and removed again (not kept open:
    it would sit in a folder being converted and be read as a file that is not DICOM).
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise OutputError(f"{path}: is a directory")
        fd, probe = self._create()
        os.close(fd)
        probe.unlink()

    def _create(self) -> tuple[int, Path]:
        """A new temporary file beside the target: 0o666 less the umask, as any new file;
        a name of its own, O_EXCL: never somebody else's file."""
        temporary = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write there: {exc.strerror}") from None

    def commit(self, text: str) -> None:
        """Write *text*, flush it to disk, put the file in place; an interrupted or failed
        write leaves the previous file (if any) and no temporary file."""
        fd, temporary = self._create()
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write: {exc.strerror}") from None
        finally:
            temporary.unlink(missing_ok=True)


def identifier_mappings(text: str) -> tuple[IdentifierMapping, ...]:
    """``--patient-identifiers``: the syntax of ``SIDECAR_PATIENT_IDENTIFIERS``
    (``system|ISSUER,system2|ISSUER2,system3``), parsed by the settings' own parser."""
    try:
        parsed = parse_identifier_mappings(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return tuple(IdentifierMapping(**item) for item in parsed)


def add_convert_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``convert`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "convert",
        help="convert DICOM files/folders to a FHIR R4 Bundle of ImagingStudy",
        description="Read DICOM headers (files, folders, DICOMDIR) and write a FHIR R4 Bundle. "
        "Exit status: 0 every DICOM instance found is in the Bundle; 1 the Bundle lacks some "
        "(each named on stderr) or no DICOM was found; 2 nothing was written.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="DICOM file, folder or DICOMDIR")
    parser.add_argument("--out", metavar="FILE", help="write the Bundle here (default: stdout)")
    parser.add_argument(
        "--outcome",
        metavar="FILE",
        help="write the OperationOutcome of what was left out here (a transaction Bundle "
        "cannot carry it)",
    )
    parser.add_argument(
        "--bundle",
        choices=(cb.COLLECTION, cb.TRANSACTION),
        default=cb.COLLECTION,
        help="Bundle type; transaction: PUT ImagingStudy, conditional create of Patients",
    )
    parser.add_argument("--patient", metavar="Patient/ID", help="subject reference for every study")
    parser.add_argument(
        "--patient-identifiers",
        metavar="'system|ISSUER,...'",
        type=identifier_mappings,
        default=(),
        help="the identifier system of each IssuerOfPatientID, as SIDECAR_PATIENT_IDENTIFIERS "
        "(no |ISSUER: PatientID alone); a transaction needs one for every issuer that is "
        "no URI or OID",
    )
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
        out = AtomicFile(args.out) if args.out else None
        outcome_file = AtomicFile(args.outcome) if args.outcome else None
        bundle, summary = convert_paths(
            args.paths,
            patient_reference=args.patient,
            timezone=args.timezone,
            bundle_type=args.bundle,
            progress=sys.stderr.isatty(),
            workers=args.workers,
            detail=Detail(args.detail),
            patient_identifiers=args.patient_identifiers,
        )
        if outcome_file is not None:  # nothing left out: R4's "All OK" information
            outcome_file.commit(_json(summary.outcome or operation_outcome([]), args.pretty))
        _write(out, _json(bundle, args.pretty))
    except (OutputError, ValueError) as exc:
        print(f"dicom-fhir convert: {exc}", file=sys.stderr)
        return EXIT_NOTHING_WRITTEN
    for line in summary.lines():
        print(line, file=sys.stderr)
    if not summary.complete or (summary.files and not summary.dicom_files):
        return EXIT_INCOMPLETE
    return EXIT_COMPLETE


def _write(output: AtomicFile | None, text: str) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        output.commit(text)


def _json(resource: dict[str, Any], pretty: bool) -> str:
    return (
        json.dumps(resource, sort_keys=True, ensure_ascii=False, indent=2 if pretty else None)
        + "\n"
    )
