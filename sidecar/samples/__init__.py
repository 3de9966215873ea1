"""Deterministic synthetic DICOM studies (``generator``) and an Orthanc loader (``loader``)."""

from sidecar.samples.generator import (
    SamplePatient,
    SampleStudy,
    generate_corpus,
    generate_studies,
    sample_patients,
    write_files,
)
from sidecar.samples.loader import LoadReport, load_into_orthanc

__all__ = [
    "LoadReport",
    "SamplePatient",
    "SampleStudy",
    "generate_corpus",
    "generate_studies",
    "load_into_orthanc",
    "sample_patients",
    "write_files",
]
