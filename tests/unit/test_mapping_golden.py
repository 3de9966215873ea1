"""Golden tests: hand-checked expected ImagingStudy JSON in tests/unit/golden/.

Set GOLDEN_REGEN=1 to rewrite the files after a deliberate change, then re-check the diff
by hand against docs/dicom-fhir-mapping.md before committing.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from sidecar.core.mapping import map_studies, validate_r4

GOLDEN = Path(__file__).parent / "golden"
SUBJECT = {"reference": "Patient/example"}
ENDPOINT = {"reference": "Endpoint/pacs-main"}


def _placeholders(text: str) -> str:
    """Replace generated ``2.25.<n>`` UIDs by ``2.25.<k>`` in order of appearance, so the
    golden file checks the mapping rather than the generator's UID derivation."""
    seen: dict[str, str] = {}

    def repl(m: re.Match) -> str:
        return seen.setdefault(m.group(), f"2.25.{len(seen) + 1}")

    return re.sub(r"2\.25\.\d{6,}", repl, text)


def check(name: str, result, *, normalise_uids: bool = False) -> None:
    actual = {"studies": result.studies, "issues": result.issues}
    for study in result.studies:
        validate_r4(study)
    path = GOLDEN / f"{name}.json"
    text = json.dumps(actual, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    if normalise_uids:
        text = _placeholders(text)
    if os.environ.get("GOLDEN_REGEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "test-SR.dcm", "reportsi.dcm"])
def test_pydicom_test_files(name):
    ds = pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True)
    result = map_studies([ds], subject=SUBJECT, endpoint=ENDPOINT, timezone="Europe/Zurich")
    check(Path(name).stem, result)


def test_dicom_json_qido_rows():
    rows = json.loads((GOLDEN / "qido_rows.input.json").read_text(encoding="utf-8"))
    result = map_studies(rows, subject=SUBJECT, endpoint=ENDPOINT, timezone="Europe/Zurich")
    check("qido_rows", result)


def test_generated_study():
    from sidecar.samples.generator import generate_studies, sample_patients

    patient = next(p for p in sample_patients() if p.patient_id and "山田" in (p.name or ""))
    ((_, datasets),) = list(
        generate_studies(patients=[patient], series_per_study=3, instances_per_series=2)
    )
    result = map_studies(datasets, subject=SUBJECT, endpoint=ENDPOINT, timezone="Europe/Zurich")
    check("generated_yamada", result, normalise_uids=True)


@pytest.mark.parametrize(
    ("case", "encoding"),
    [
        ("clean", "latin1"),
        ("clean", "utf8"),
        ("hostile", "latin1"),
        ("hostile", "utf8"),
        ("charsets", "latin1"),
        ("charsets", "utf8"),
        ("charsets", "cyrillic"),
        ("charsets", "greek"),
    ],
)
def test_recorded_orthanc_answers(case, encoding):
    """Study + instance rows recorded from Orthanc 1.10.1 (see test_mapping_orthanc)."""
    answer = json.loads(
        (GOLDEN / f"orthanc_{case}_{encoding}.input.json").read_text(encoding="utf-8")
    )
    rows = answer["study"] + answer["instance"]
    result = map_studies(rows, subject=SUBJECT, endpoint=ENDPOINT, timezone="Europe/Zurich")
    check(f"orthanc_{case}_{encoding}", result)
