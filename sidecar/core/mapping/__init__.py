"""Pure DICOM -> FHIR R4 mapping core: no network, no settings, no logging.

Public API (other modules code against these names)::

    Detail, MappingResult, map_studies (= extract_records, then assemble), imaging_study_id,
    study_identifier,
    build_endpoint, build_patient, patient_key, trim_to_detail, validate_r4,
    merge_studies, study_uid_of

Each module states the rules it applies and cites the DICOM tags it reads (PS3.3, PS3.6)
and the FHIR R4 elements it writes (https://hl7.org/fhir/R4/imagingstudy.html): stage 1,
``extract.py`` (records -> Facts), stage 2, ``imaging_study.py`` (Facts -> ImagingStudy).
"""

from .detail import trim_to_detail
from .endpoint import build_endpoint
from .extract import Facts, extract
from .imaging_study import (
    Detail,
    MappingResult,
    StudyAssembler,
    assemble,
    extract_records,
    imaging_study_id,
    map_studies,
    study_identifier,
    study_uid_of,
)
from .merge import merge_studies
from .patient import build_patient, patient_key
from .validation import validate_r4

__all__ = [
    "Detail",
    "Facts",
    "MappingResult",
    "StudyAssembler",
    "assemble",
    "build_endpoint",
    "build_patient",
    "extract",
    "extract_records",
    "imaging_study_id",
    "map_studies",
    "merge_studies",
    "patient_key",
    "study_identifier",
    "study_uid_of",
    "trim_to_detail",
    "validate_r4",
]
