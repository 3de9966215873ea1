"""dicom-fhir-sidecar: a PACS's imaging, visible in FHIR R4 (docs/architecture.md)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dicom-fhir-sidecar")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
