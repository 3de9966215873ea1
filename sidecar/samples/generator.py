"""Deterministic synthetic DICOM studies for tests, demos and benchmarks.

Everything here is a pure function of its parameters: the same parameters give byte-identical
files (``dcmwrite`` of the returned datasets), on any machine with the same pydicom major
version. UIDs are ``2.25.<int>`` built from name-based UUIDs (``uuid5``) of the seed and the
position of the object (patient key, study index, series index, instance index), so a study's
UIDs do not depend on which other patients were generated alongside it.

Pixel data is real but cheap: one base image per series (a few geometric shapes with a
plausible value structure plus fixed noise) and a small per-instance change, so that corpora
of 10,000+ instances generate in seconds.

Procedure codes are there to exercise the coding-scheme mapping (LN, SCT and a local,
unknown scheme); they are illustrative and not meant for clinical use.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pydicom
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import (
    BasicTextSRStorage,
    ComprehensiveSRStorage,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    UltrasoundImageStorage,
)

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "SamplePatient",
    "SampleStudy",
    "generate_corpus",
    "generate_studies",
    "sample_patients",
    "write_files",
]

_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:dicom-fhir-sidecar:samples")


def _uid(*parts: object) -> str:
    """A deterministic ``2.25.<uuid-int>`` UID (at most 44 characters)."""
    name = "\x1f".join(str(p) for p in parts)
    return f"2.25.{uuid.uuid5(_UUID_NAMESPACE, name).int}"


def _int_seed(*parts: object) -> int:
    name = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(name).digest()[:8], "big")


IMPLEMENTATION_CLASS_UID = _uid("implementation-class")
_IMPLEMENTATION_VERSION = "DFS_SAMPLES_1"


# --------------------------------------------------------------------------------------------
# Public data model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplePatient:
    patient_id: str
    issuer: str | None
    name: str
    birth_date: str
    sex: str


@dataclass(frozen=True)
class SampleStudy:
    study_uid: str
    patient: SamplePatient
    accession: str
    modalities: tuple[str, ...]
    series_count: int
    instance_count: int


# --------------------------------------------------------------------------------------------
# Study templates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SeriesSpec:
    modality: str
    body_part: str
    description: str
    laterality: str | None = None
    variant: str = ""  # e.g. "doppler" (US RGB), "lung" (CT window)


@dataclass(frozen=True)
class _StudySpec:
    key: str
    description: str
    images: tuple[_SeriesSpec, ...]
    report: _SeriesSpec | None
    procedure: tuple[str, str, str] | None  # (code value, scheme designator, meaning)
    sr_class: str = BasicTextSRStorage


_TEMPLATES: dict[str, _StudySpec] = {
    t.key: t
    for t in (
        _StudySpec(
            "CT_CHEST",
            "CT CHEST WITHOUT CONTRAST",
            (
                _SeriesSpec("CT", "CHEST", "Axial 5mm soft tissue"),
                _SeriesSpec("CT", "CHEST", "Axial 1mm lung", variant="lung"),
            ),
            _SeriesSpec("SR", "CHEST", "Radiology report"),
            ("24627-2", "LN", "CT Chest"),
            ComprehensiveSRStorage,
        ),
        _StudySpec(
            "CT_ABDOMEN",
            "CT ABDOMEN WITH CONTRAST",
            (
                _SeriesSpec("CT", "ABDOMEN", "Portal venous 3mm"),
                _SeriesSpec("CT", "ABDOMEN", "Arterial 3mm"),
            ),
            _SeriesSpec("SR", "ABDOMEN", "Radiology report"),
            ("CTABD01", "99HOSPA", "CT abdomen with contrast (local code)"),
            ComprehensiveSRStorage,
        ),
        _StudySpec(
            "CT_HEAD",
            "CT HEAD WITHOUT CONTRAST",
            (_SeriesSpec("CT", "HEAD", "Axial 5mm brain"),),
            _SeriesSpec("SR", "HEAD", "Radiology report"),
            None,
        ),
        _StudySpec(
            "MR_BRAIN",
            "MRI BRAIN",
            (
                _SeriesSpec("MR", "HEAD", "T1 SE axial"),
                _SeriesSpec("MR", "HEAD", "T2 FLAIR axial"),
            ),
            _SeriesSpec("SR", "HEAD", "Radiology report"),
            ("24590-2", "LN", "MR Brain"),
        ),
        _StudySpec(
            "MR_KNEE_R",
            "MRI KNEE RIGHT",
            (
                _SeriesSpec("MR", "KNEE", "PD FS sagittal", "R"),
                _SeriesSpec("MR", "KNEE", "T1 coronal", "R"),
            ),
            _SeriesSpec("SR", "KNEE", "Radiology report"),
            None,
        ),
        _StudySpec(
            "MR_KNEE_L",
            "MRI KNEE LEFT",
            (
                _SeriesSpec("MR", "KNEE", "PD FS sagittal", "L"),
                _SeriesSpec("MR", "KNEE", "T1 coronal", "L"),
            ),
            _SeriesSpec("SR", "KNEE", "Radiology report"),
            None,
        ),
        _StudySpec(
            "US_ABDOMEN",
            "US ABDOMEN COMPLETE",
            (
                _SeriesSpec("US", "ABDOMEN", "B-mode liver"),
                _SeriesSpec("US", "ABDOMEN", "Color Doppler portal vein", variant="doppler"),
            ),
            _SeriesSpec("SR", "ABDOMEN", "Sonography report"),
            ("24558-9", "LN", "US Abdomen"),
        ),
        _StudySpec(
            "US_BREAST_L",
            "US BREAST LEFT",
            (
                _SeriesSpec("US", "BREAST", "B-mode left breast", "L"),
                _SeriesSpec("US", "BREAST", "Color Doppler left breast", "L", "doppler"),
            ),
            _SeriesSpec("SR", "BREAST", "Sonography report"),
            None,
        ),
        _StudySpec(
            "CR_CHEST",
            "XR CHEST 2 VIEWS",
            (
                _SeriesSpec("CR", "CHEST", "PA"),
                _SeriesSpec("CR", "CHEST", "Lateral"),
            ),
            _SeriesSpec("SR", "CHEST", "Radiology report"),
            ("399208008", "SCT", "Plain chest X-ray"),
        ),
        _StudySpec(
            "CR_KNEES",
            "XR KNEES BILATERAL",
            (
                _SeriesSpec("CR", "KNEE", "Right knee AP", "R"),
                _SeriesSpec("CR", "KNEE", "Left knee AP", "L"),
            ),
            None,
            None,
        ),
    )
}


# --------------------------------------------------------------------------------------------
# The roster
# --------------------------------------------------------------------------------------------

_ROSTER: tuple[tuple[SamplePatient, tuple[str, ...]], ...] = (
    # Ordinary patients.
    (SamplePatient("P-1001", "HOSP-A", "Doe^Jane", "19700412", "F"), ("CT_CHEST", "CR_CHEST")),
    (SamplePatient("P-1002", "HOSP-A", "Smith^John^A", "19581103", "M"), ("MR_BRAIN", "CT_HEAD")),
    (
        SamplePatient("P-1003", "HOSP-A", "Garcia^Maria", "19851220", "F"),
        ("US_ABDOMEN", "CT_ABDOMEN"),
    ),
    (SamplePatient("P-1004", "HOSP-A", "Okafor^Chidi", "19920708", "M"), ("CR_KNEES", "MR_KNEE_R")),
    (SamplePatient("P-1005", "HOSP-A", "Nguyen^Lan", "19770115", "F"), ("US_BREAST_L", "CR_CHEST")),
    # PatientIDs that are prefixes of one another ("12*" matches both in QIDO).
    (SamplePatient("12", "HOSP-A", "Prefix^Short", "19660301", "M"), ("CT_ABDOMEN", "US_ABDOMEN")),
    (SamplePatient("123", "HOSP-A", "Prefix^Long", "19690917", "F"), ("CT_ABDOMEN", "MR_BRAIN")),
    # PatientIDs that differ only in case.
    (SamplePatient("abc", "HOSP-A", "Case^Lower", "19900101", "F"), ("MR_KNEE_R", "CR_KNEES")),
    (SamplePatient("ABC", "HOSP-A", "Case^Upper", "19900202", "M"), ("MR_KNEE_L", "CT_HEAD")),
    # The same PatientID under two issuers.
    (SamplePatient("P-SAME", "HOSP-A", "Same^Alpha", "19500505", "M"), ("CT_HEAD", "MR_BRAIN")),
    (SamplePatient("P-SAME", "HOSP-B", "Same^Beta", "19830830", "F"), ("CR_CHEST", "US_ABDOMEN")),
    # Non-ASCII names (SpecificCharacterSet ISO_IR 192).
    (SamplePatient("P-2001", "HOSP-A", "Müller^Zoë", "19880229", "F"), ("MR_BRAIN", "CT_CHEST")),
    (
        SamplePatient("P-2002", "HOSP-B", "Yamada^Tarou=山田^太郎=やまだ^たろう", "19610614", "M"),
        ("CT_CHEST", "US_ABDOMEN"),
    ),
    (SamplePatient("P-2003", "HOSP-B", "Παπαδοπούλου^Ελένη", "19950321", "F"), ("US_BREAST_L",)),
    # No IssuerOfPatientID at all.
    (SamplePatient("P-NOISSUER", None, "Noissuer^Pat", "20010711", "O"), ("CR_KNEES", "CT_HEAD")),
)

_PLANS: dict[SamplePatient, tuple[str, ...]] = dict(_ROSTER)
_ALL_TEMPLATE_KEYS: tuple[str, ...] = tuple(_TEMPLATES)


def sample_patients() -> list[SamplePatient]:
    """The fixed roster: ordinary patients plus edge cases for patient isolation."""
    return [p for p, _ in _ROSTER]


def _plan_for(patient: SamplePatient) -> tuple[str, ...]:
    plan = _PLANS.get(patient)
    if plan is not None:
        return plan
    # Unknown patient: pick a stable rotation of all templates from its key.
    start = _int_seed("plan", patient.issuer, patient.patient_id) % len(_ALL_TEMPLATE_KEYS)
    return _ALL_TEMPLATE_KEYS[start:] + _ALL_TEMPLATE_KEYS[:start]


def _is_ascii(text: str) -> bool:
    return text.isascii()


# --------------------------------------------------------------------------------------------
# Pixel data
# --------------------------------------------------------------------------------------------

_GRIDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _grid(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    key = (rows, cols)
    if key not in _GRIDS:
        yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
        _GRIDS[key] = (yy, xx)
    return _GRIDS[key]


def _ellipse(rows: int, cols: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = _grid(rows, cols)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


@functools.cache
def _anatomy(modality: str, body_part: str, variant: str) -> np.ndarray:
    """The noise-free image of a series kind (cached; never modified in place)."""
    if modality == "CT":  # stored values = HU + 1024 (RescaleIntercept -1024)
        n = 512
        img = np.full((n, n), -1000.0, dtype=np.float32)  # air, HU
        if body_part == "HEAD":
            img[_ellipse(n, n, 256, 256, 200, 165)] = 1000.0  # skull
            img[_ellipse(n, n, 256, 256, 185, 150)] = 35.0  # brain
            img[_ellipse(n, n, 256, 256, 25, 60)] = 5.0  # ventricles (CSF)
        else:
            img[_ellipse(n, n, 270, 256, 170, 225)] = 40.0  # soft tissue body
            img[_ellipse(n, n, 270, 256, 155, 210)] = -90.0  # fat layer
            img[_ellipse(n, n, 270, 256, 145, 200)] = 45.0  # inner soft tissue
            if body_part == "CHEST":
                img[_ellipse(n, n, 250, 160, 110, 75)] = -850.0  # right lung
                img[_ellipse(n, n, 250, 352, 110, 75)] = -850.0  # left lung
                img[_ellipse(n, n, 240, 280, 55, 60)] = 50.0  # heart
            else:
                img[_ellipse(n, n, 230, 180, 70, 90)] = 60.0  # liver
                img[_ellipse(n, n, 300, 190, 30, 20)] = 30.0  # kidneys
                img[_ellipse(n, n, 300, 322, 30, 20)] = 30.0
            img[_ellipse(n, n, 360, 256, 22, 22)] = 700.0  # vertebra
        out = (img + 1024).astype(np.int16)
    elif modality == "MR":
        n = 256
        img = np.zeros((n, n), dtype=np.float32)
        if body_part == "HEAD":
            img[_ellipse(n, n, 128, 128, 100, 82)] = 600.0
            img[_ellipse(n, n, 128, 128, 92, 74)] = 900.0
            img[_ellipse(n, n, 128, 128, 14, 30)] = 250.0
        else:
            img[_ellipse(n, n, 128, 128, 110, 70)] = 500.0  # soft tissue
            img[_ellipse(n, n, 80, 128, 45, 40)] = 1200.0  # femur
            img[_ellipse(n, n, 180, 128, 40, 36)] = 1100.0  # tibia
        out = img.astype(np.int16)
    elif modality == "US":  # 1 inside the fan, 0 outside, 0.25 in a hypoechoic structure
        rows, cols = 480, 640
        yy, xx = _grid(rows, cols)
        dy, dx = yy + 40.0, xx - cols / 2
        radius = np.hypot(dy, dx)
        angle = np.arctan2(dx, dy)
        fan = (radius > 60) & (radius < 470) & (np.abs(angle) < 0.65)
        out = fan.astype(np.float32)
        out[fan & _ellipse(rows, cols, 260, 300, 60, 90)] = 0.25
    else:  # CR
        n = 1024
        img = np.full((n, n), 300.0, dtype=np.float32)
        if body_part == "CHEST":
            img[_ellipse(n, n, 540, 512, 470, 420)] = 2000.0  # body
            img[_ellipse(n, n, 500, 330, 330, 150)] = 900.0  # lungs (dark on film)
            img[_ellipse(n, n, 500, 694, 330, 150)] = 900.0
            img[_ellipse(n, n, 620, 560, 160, 140)] = 2300.0  # heart
        else:
            img[_ellipse(n, n, 512, 512, 500, 230)] = 1500.0  # soft tissue
            img[_ellipse(n, n, 280, 512, 260, 110)] = 3200.0  # femur
            img[_ellipse(n, n, 760, 512, 250, 95)] = 3100.0  # tibia
        out = img.astype(np.int16)
    out.setflags(write=False)
    return out


class _SeriesPixels:
    """One base image per series; ``frame(i)`` returns it with a small per-instance change."""

    def __init__(self, spec: _SeriesSpec, rng: np.random.Generator, step: int = 1) -> None:
        self.spec = spec
        anatomy = _anatomy(spec.modality, spec.body_part, spec.variant)
        if step > 1:  # a smaller matrix: every step-th row and column
            anatomy = anatomy[::step, ::step]
        shape = anatomy.shape
        m = spec.modality
        if m == "CT":  # int16, +-20 HU of uniform noise
            noise = rng.integers(-20, 21, size=shape, dtype=np.int16)
            self.base = np.clip(anatomy + noise, 0, 4095).astype(np.int16)
        elif m in ("MR", "CR"):  # uint16, 12 bits stored
            noise = rng.integers(0, 60 if m == "MR" else 50, size=shape, dtype=np.int16)
            self.base = np.clip(anatomy + noise, 0, 4095).astype(np.uint16)
        else:  # US: speckle inside the fan, uint8 gray or RGB with a colour-flow region
            speckle = rng.integers(20, 200, size=shape, dtype=np.uint8)
            gray = (anatomy * speckle).astype(np.uint8)
            if spec.variant == "doppler":
                rows, cols = shape
                rgb = np.repeat(gray[:, :, None], 3, axis=2)
                flow = (anatomy > 0) & _ellipse(rows, cols, 260, 300, 20, 70)
                upper = flow & (_grid(rows, cols)[0] < 260)
                rgb[upper] = (200, 30, 30)  # towards the probe: red
                rgb[flow & ~upper] = (30, 60, 210)  # away from the probe: blue
                self.base = rgb
            else:
                self.base = gray
        # A small "lesion" whose size changes from instance to instance.
        r, c = shape
        self.lesion_center = (
            int(r * (0.35 + 0.3 * rng.random())),
            int(c * (0.35 + 0.3 * rng.random())),
        )
        self.lesion_max = max(4, r // 40)

    # --- per instance ----------------------------------------------------------------------
    def frame(self, index: int) -> bytes:
        img = self.base.copy()
        cy, cx = self.lesion_center
        radius = 2 + (index * 3) % self.lesion_max
        y0, y1 = cy - radius, cy + radius + 1
        x0, x1 = cx - radius, cx + radius + 1
        yy, xx = np.ogrid[-radius : radius + 1, -radius : radius + 1]
        mask = yy * yy + xx * xx <= radius * radius
        patch = img[y0:y1, x0:x1]
        if patch.ndim == 3:
            patch[mask] = (255, 255, 255)
        else:
            value = {"CT": 1100 + 1024, "MR": 1500, "US": 240, "CR": 3500}[self.spec.modality]
            patch[mask] = value
        return img.tobytes()


# --------------------------------------------------------------------------------------------
# Dataset construction
# --------------------------------------------------------------------------------------------

_SOP_CLASS = {
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "US": UltrasoundImageStorage,
    "CR": ComputedRadiographyImageStorage,
}
_REFERRERS = ("Hopper^Grace^^Dr.", "House^Gregory^^Dr.", "Curie^Marie^^Dr.", "Osler^William^^Dr.")
_PERFORMERS = ("Tech^Alex", "Tech^Robin", "Tech^Sam")
_TZ_OFFSETS = ("+0100", "+0200", "-0500", "+0900", "+0000", "+0530")
_FINDINGS = (
    "No acute abnormality.",
    "Small nodule, follow-up recommended.",
    "Findings within normal limits for age.",
    "Mild degenerative changes.",
)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


@dataclass(frozen=True)
class _StudyContext:
    seed: int
    patient: SamplePatient
    study_index: int
    study_uid: str
    accession: str
    accession_issuer: str
    spec: _StudySpec
    study_date: date
    study_time: str
    tz_offset: str | None
    charset: str
    referrer: str


def _file_meta_template(sop_class: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = "1.2"  # replaced per instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = _IMPLEMENTATION_VERSION
    return meta


_META_TEMPLATES: dict[str, FileMetaDataset] = {}


def _new_file_dataset(sop_class: str, sop_uid: str) -> FileDataset:
    meta_template = _META_TEMPLATES.get(sop_class)
    if meta_template is None:
        meta_template = _META_TEMPLATES[sop_class] = _file_meta_template(sop_class)
    meta = FileMetaDataset()
    _clone_elements(meta, meta_template)
    meta.MediaStorageSOPInstanceUID = sop_uid
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\x00" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    return ds


def _fill_common(
    ds: Dataset, ctx: _StudyContext, series: _SeriesSpec, series_uid: str, number: int
) -> None:
    p = ctx.patient
    ds.SpecificCharacterSet = ctx.charset
    ds.PatientName = p.name
    ds.PatientID = p.patient_id
    if p.issuer is not None:
        ds.IssuerOfPatientID = p.issuer
    ds.PatientBirthDate = p.birth_date
    ds.PatientSex = p.sex

    ds.StudyInstanceUID = ctx.study_uid
    ds.StudyDate = ctx.study_date.strftime("%Y%m%d")
    ds.StudyTime = ctx.study_time
    if ctx.tz_offset is not None:
        ds.TimezoneOffsetFromUTC = ctx.tz_offset
    ds.AccessionNumber = ctx.accession
    issuer = Dataset()
    issuer.LocalNamespaceEntityID = ctx.accession_issuer
    ds.IssuerOfAccessionNumberSequence = Sequence([issuer])
    ds.StudyDescription = ctx.spec.description
    ds.ReferringPhysicianName = ctx.referrer
    ds.StudyID = f"S{ctx.study_index + 1}"
    if ctx.spec.procedure is not None:
        ds.ProcedureCodeSequence = Sequence([_code(*ctx.spec.procedure)])
    ds.InstitutionName = "Hospital A" if (p.issuer or "HOSP-A") == "HOSP-A" else "Hospital B"
    ds.Manufacturer = "dicom-fhir-sidecar synthetic"

    ds.Modality = series.modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = number
    ds.SeriesDescription = series.description
    ds.BodyPartExamined = series.body_part
    if series.laterality is not None:
        ds.Laterality = series.laterality
    minutes = int(ctx.study_time[:2]) * 60 + int(ctx.study_time[2:4]) + 4 * number
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = f"{(minutes // 60) % 24:02d}{minutes % 60:02d}00"
    ds.PerformingPhysicianName = _PERFORMERS[(ctx.study_index + number) % len(_PERFORMERS)]


def _clone_elements(target: Dataset, template: Dataset) -> None:
    """Copy ``template``'s elements into ``target`` as new, independent DataElements.

    Much cheaper than setting each attribute by keyword, and unlike sharing the elements it
    keeps the instances independent: ``ds.PatientID = "x"`` on one instance changes only it.
    """
    for elem in template.values():
        value = elem.value
        if elem.VR == "SQ":
            value = Sequence([_clone_dataset(item) for item in value])
            converted = True
        elif isinstance(value, MultiValue):
            value = list(value)
            converted = False
        else:
            converted = True  # str, int, float, PersonName, UID, bytes: immutable
        target.add(
            DataElement(
                elem.tag,
                elem.VR,
                value,
                already_converted=converted,
                validation_mode=config.IGNORE,
            )
        )


def _clone_dataset(template: Dataset) -> Dataset:
    ds = Dataset()
    _clone_elements(ds, template)
    return ds


def _image_template(
    ctx: _StudyContext,
    series: _SeriesSpec,
    series_uid: str,
    series_number: int,
    frame_uid: str,
    pixels: _SeriesPixels,
) -> Dataset:
    """Everything an image instance of the series shares with the others."""
    ds = Dataset()
    _fill_common(ds, ctx, series, series_uid, series_number)
    m = series.modality
    m3d = m in ("CT", "MR")
    ds.ContentDate = ds.SeriesDate
    ds.ContentTime = ds.SeriesTime
    ds.AcquisitionDate = ds.SeriesDate
    ds.AcquisitionTime = ds.SeriesTime
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"] if m3d else ["ORIGINAL", "PRIMARY"]
    if series.laterality is not None and m in ("CR", "US"):
        ds.ImageLaterality = series.laterality

    base = pixels.base
    ds.Rows, ds.Columns = int(base.shape[0]), int(base.shape[1])
    if base.ndim == 3:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    else:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
    if m == "CT":
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        if series.variant == "lung":
            ds.WindowCenter, ds.WindowWidth = -600, 1500
        elif series.body_part == "HEAD":
            ds.WindowCenter, ds.WindowWidth = 40, 80
        else:
            ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.KVP = 120
        ds.ConvolutionKernel = "LUNG" if series.variant == "lung" else "STANDARD"
    elif m in ("MR", "CR"):
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        if m == "MR":
            t1 = "T1" in series.description
            ds.ScanningSequence = "SE"
            ds.SequenceVariant = "NONE"
            ds.MagneticFieldStrength = 1.5
            ds.RepetitionTime = 500 if t1 else 4000
            ds.EchoTime = 15 if t1 else 100
        else:
            ds.ViewPosition = {"PA": "PA", "Lateral": "LL"}.get(series.description, "AP")
            ds.ImagerPixelSpacing = [0.35, 0.35]
    else:  # US
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0

    if m3d:
        spacing = 0.7 if m == "CT" else 0.9
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceThickness = _slice_thickness(series)
        ds.PixelSpacing = [spacing, spacing]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PatientPosition = "HFS"
    return ds


def _slice_thickness(series: _SeriesSpec) -> float:
    if series.variant == "lung":
        return 1.0
    return 5.0 if series.modality == "CT" else 4.0


def _image_dataset(
    ctx: _StudyContext,
    series: _SeriesSpec,
    series_number: int,
    template: Dataset,
    pixels: _SeriesPixels,
    index: int,
) -> FileDataset:
    sop_uid = _uid(template.SeriesInstanceUID, index)
    ds = _new_file_dataset(_SOP_CLASS[series.modality], sop_uid)
    _clone_elements(ds, template)
    ds.InstanceNumber = index + 1
    if series.modality in ("CT", "MR"):
        z = round(-index * _slice_thickness(series), 2)
        spacing = 0.7 if series.modality == "CT" else 0.9
        ds.ImagePositionPatient = [round(-spacing * pixels.base.shape[1] / 2, 2), -180.0, z]
        ds.SliceLocation = z
    ds.PixelData = pixels.frame(index)
    return ds


def _sr_dataset(
    ctx: _StudyContext,
    series: _SeriesSpec,
    series_uid: str,
    series_number: int,
    index: int,
    evidence: list[tuple[str, list[tuple[str, str]]]],
) -> FileDataset:
    # The report's content depends on the evidence, so its UID does too.
    sop_uid = _uid(series_uid, index, [(uid, len(refs)) for uid, refs in evidence])
    ds = _new_file_dataset(ctx.spec.sr_class, sop_uid)
    _fill_common(ds, ctx, series, series_uid, series_number)
    ds.InstanceNumber = index + 1
    ds.ContentDate = ds.SeriesDate
    ds.ContentTime = ds.SeriesTime
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "2000"
    ds.ContentTemplateSequence = Sequence([template])
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.PerformedProcedureCodeSequence = (
        Sequence([_code(*ctx.spec.procedure)]) if ctx.spec.procedure else Sequence()
    )
    finding = Dataset()
    finding.RelationshipType = "CONTAINS"
    finding.ValueType = "TEXT"
    finding.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
    text = _FINDINGS[_int_seed(ctx.study_uid, "finding", index) % len(_FINDINGS)]
    finding.TextValue = f"{ctx.spec.description}: {text}"
    impression = Dataset()
    impression.RelationshipType = "CONTAINS"
    impression.ValueType = "TEXT"
    impression.ConceptNameCodeSequence = Sequence([_code("121073", "DCM", "Impression")])
    impression.TextValue = "Preliminary report." if index == 0 else f"Addendum {index}."
    ds.ContentSequence = Sequence([finding, impression])
    if evidence:
        study_item = Dataset()
        study_item.StudyInstanceUID = ctx.study_uid
        series_items = []
        for ev_series_uid, instances in evidence:
            s_item = Dataset()
            s_item.SeriesInstanceUID = ev_series_uid
            refs = []
            for sop_class, ev_sop_uid in instances:
                ref = Dataset()
                ref.ReferencedSOPClassUID = sop_class
                ref.ReferencedSOPInstanceUID = ev_sop_uid
                refs.append(ref)
            s_item.ReferencedSOPSequence = Sequence(refs)
            series_items.append(s_item)
        study_item.ReferencedSeriesSequence = Sequence(series_items)
        ds.CurrentRequestedProcedureEvidenceSequence = Sequence([study_item])
    return ds


def _series_plan(spec: _StudySpec, count: int) -> list[_SeriesSpec]:
    """``count`` series: images cycled, the report (if any) last when there are >= 2."""
    if count <= 0:
        return []
    n_images = count - 1 if (spec.report is not None and count >= 2) else count
    plan: list[_SeriesSpec] = []
    for i in range(n_images):
        base = spec.images[i % len(spec.images)]
        repeat = i // len(spec.images)
        if repeat:
            base = _SeriesSpec(
                base.modality,
                base.body_part,
                f"{base.description} #{repeat + 1}",
                base.laterality,
                base.variant,
            )
        plan.append(base)
    if len(plan) < count and spec.report is not None:
        plan.append(spec.report)
    return plan


def _study_context(
    seed: int, patient: SamplePatient, study_index: int, template_key: str
) -> _StudyContext:
    key = (seed, patient.issuer, patient.patient_id, study_index)
    h = _int_seed("study", *key)
    study_uid = _uid("study", *key)
    accession_issuer = f"{patient.issuer or 'HOSP-A'}-RIS"
    # SH, at most 16 characters; hash-derived so it does not depend on the roster subset.
    prefix = "".join(c for c in (patient.issuer or "A") if c.isalnum())[-1:] or "X"
    accession = f"{prefix}{h % 10**13:013d}"
    study_date = date(2019, 1, 1) + timedelta(days=(h >> 8) % 1800)
    minutes = 7 * 60 + (h >> 20) % (11 * 60)
    study_time = f"{minutes // 60:02d}{minutes % 60:02d}{(h >> 32) % 60:02d}"
    tz_offset = _TZ_OFFSETS[(h >> 40) % len(_TZ_OFFSETS)] if (h >> 36) % 2 == 0 else None
    text = patient.name + patient.patient_id + (patient.issuer or "")
    charset = "ISO_IR 100" if _is_ascii(text) else "ISO_IR 192"
    return _StudyContext(
        seed=seed,
        patient=patient,
        study_index=study_index,
        study_uid=study_uid,
        accession=accession,
        accession_issuer=accession_issuer,
        spec=_TEMPLATES[template_key],
        study_date=study_date,
        study_time=study_time,
        tz_offset=tz_offset,
        charset=charset,
        referrer=_REFERRERS[(h >> 44) % len(_REFERRERS)],
    )


def _matrix_step(matrix_scale: float) -> int:
    """The subsampling step of a ``matrix_scale`` (1 = full size, 0.125 = every 8th pixel)."""
    if not 0 < matrix_scale <= 1:
        raise ValueError("matrix_scale must be in (0, 1]")
    return max(1, round(1 / matrix_scale))


def _build_study(
    ctx: _StudyContext, series_sizes: list[tuple[_SeriesSpec, int]], step: int = 1
) -> tuple[SampleStudy, list[pydicom.Dataset]]:
    datasets: list[pydicom.Dataset] = []
    evidence: list[tuple[str, list[tuple[str, str]]]] = []
    frame_uid = _uid(ctx.study_uid, "frame-of-reference")
    modalities: list[str] = []
    for number, (series, size) in enumerate(series_sizes, start=1):
        # Derived from the series' kind too: other sizing parameters must never give the
        # same UID to different content (a PACS would keep the first and ignore the other).
        series_uid = _uid(ctx.study_uid, "series", number, series)
        if step > 1:  # smaller pixel matrices are different content: different UIDs
            series_uid = _uid(series_uid, "matrix-step", step)
        if series.modality not in modalities:
            modalities.append(series.modality)
        if series.modality == "SR":
            for i in range(size):
                datasets.append(_sr_dataset(ctx, series, series_uid, number, i, evidence))
            continue
        rng = np.random.default_rng(_int_seed(series_uid, "pixels"))
        pixels = _SeriesPixels(series, rng, step)
        template = _image_template(ctx, series, series_uid, number, frame_uid, pixels)
        refs = []
        for i in range(size):
            ds = _image_dataset(ctx, series, number, template, pixels, i)
            refs.append((ds.SOPClassUID, ds.SOPInstanceUID))
            datasets.append(ds)
        evidence.append((series_uid, refs))
    study = SampleStudy(
        study_uid=ctx.study_uid,
        patient=ctx.patient,
        accession=ctx.accession,
        modalities=tuple(modalities),
        series_count=len(series_sizes),
        instance_count=len(datasets),
    )
    return study, datasets


# --------------------------------------------------------------------------------------------
# Public generators
# --------------------------------------------------------------------------------------------


def generate_studies(
    *,
    studies_per_patient: int = 1,
    series_per_study: int = 3,
    instances_per_series: int = 4,
    patients: list[SamplePatient] | None = None,
    seed: int = 0,
    matrix_scale: float = 1.0,
) -> Iterator[tuple[SampleStudy, list[pydicom.Dataset]]]:
    """Studies for each patient (default: the roster), one study at a time.

    Study ``k`` of a patient uses the ``k``-th template of the patient's plan (cycled). With
    two or more series, the last series of a study with a report template is an SR series.
    Every series has ``instances_per_series`` instances. ``matrix_scale`` < 1 gives smaller
    pixel matrices (and other series/SOP UIDs) for fast bulk loads.
    """
    step = _matrix_step(matrix_scale)
    if min(studies_per_patient, series_per_study, instances_per_series) < 0:
        raise ValueError("sizes must not be negative")
    roster = sample_patients() if patients is None else list(patients)
    for patient in roster:
        plan = _plan_for(patient)
        for k in range(studies_per_patient):
            ctx = _study_context(seed, patient, k, plan[k % len(plan)])
            series = _series_plan(ctx.spec, series_per_study)
            yield _build_study(ctx, [(s, instances_per_series) for s in series], step)


_GIVEN = ("Alex", "Sam", "Kim", "Noor", "Jonas", "Ana", "Li", "Fatima", "Pedro", "Ingrid")
_FAMILY = ("Berg", "Kowalski", "Rossi", "Haddad", "Tanaka", "Olsen", "Silva", "Mensah", "Novak")

# Instances per series for the corpus, by modality: (low, high) inclusive.
_CORPUS_SERIES_SIZE = {"CT": (20, 60), "MR": (15, 30), "US": (2, 8), "CR": (1, 2), "SR": (1, 1)}


def _corpus_patient(seed: int, n: int) -> SamplePatient:
    h = _int_seed("corpus-patient", seed, n)
    issuer = ("HOSP-A", "HOSP-A", "HOSP-B", None)[h % 4]
    birth = date(1930, 1, 1) + timedelta(days=(h >> 8) % 30000)
    return SamplePatient(
        patient_id=f"C{n:07d}",
        issuer=issuer,
        name=f"{_FAMILY[(h >> 4) % len(_FAMILY)]}^{_GIVEN[(h >> 12) % len(_GIVEN)]}",
        birth_date=birth.strftime("%Y%m%d"),
        sex="MF"[(h >> 24) % 2],
    )


def generate_corpus(
    *,
    target_instances: int,
    seed: int = 0,
    include_roster: bool = True,
    matrix_scale: float = 1.0,
) -> Iterator[tuple[SampleStudy, list[pydicom.Dataset]]]:
    """A benchmark corpus of exactly ``target_instances`` instances over many patients.

    The roster comes first (one study each), then generated patients ``C0000001``... with
    1-3 studies of 2-5 series; series sizes are plausible per modality (CT 20-60, MR 15-30,
    US 2-8, CR 1-2, SR 1). The last series is cut short so that the total is exact.
    ``include_roster=False`` leaves the roster out (a PACS that must not share PatientIDs
    with one holding the roster); ``matrix_scale`` as in :func:`generate_studies`.
    """
    if target_instances < 0:
        raise ValueError("target_instances must not be negative")
    remaining = target_instances
    step = _matrix_step(matrix_scale)

    def patients() -> Iterator[tuple[SamplePatient, int]]:
        for p in sample_patients() if include_roster else ():
            yield p, 1
        n = 1
        while True:
            yield _corpus_patient(seed, n), 1 + _int_seed("corpus-studies", seed, n) % 3
            n += 1

    for patient, n_studies in patients():
        plan = _plan_for(patient)
        for k in range(n_studies):
            if remaining <= 0:
                return
            ctx = _study_context(seed, patient, k, plan[k % len(plan)])
            rng = np.random.default_rng(_int_seed("corpus-sizes", ctx.study_uid))
            series_sizes: list[tuple[_SeriesSpec, int]] = []
            for s in _series_plan(ctx.spec, int(rng.integers(2, 6))):
                if remaining <= 0:
                    break
                low, high = _CORPUS_SERIES_SIZE[s.modality]
                size = min(int(rng.integers(low, high + 1)), remaining)
                series_sizes.append((s, size))
                remaining -= size
            yield _build_study(ctx, series_sizes, step)


def write_files(datasets: Iterable[pydicom.Dataset], directory: str | Path) -> list[Path]:
    """Write datasets as ``<dir>/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm``."""
    root = Path(directory)
    paths: list[Path] = []
    for ds in datasets:
        folder = root / str(ds.StudyInstanceUID) / str(ds.SeriesInstanceUID)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths
