"""The mapping on QIDO-RS answers recorded from a real Orthanc 1.10.1 (DICOMweb plugin
1.7), once with its default ``DefaultEncoding`` (Latin-1) and once with ``Utf8``.

The fixtures ``golden/orthanc_<case>_<encoding>.input.json`` hold the answers verbatim
(``study``, ``series`` and ``instance`` rows, the queries that produced them, and what the
stored files held); the expected mappings are golden files of test_mapping_golden.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar.mapping import Detail, map_studies

GOLDEN = Path(__file__).parent / "golden"
SUBJECT = {"reference": "Patient/example"}


def recorded(case: str, encoding: str) -> dict:
    path = GOLDEN / f"orthanc_{case}_{encoding}.input.json"
    return json.loads(path.read_text(encoding="utf-8"))


def rows(answer: dict, detail: Detail = Detail.INSTANCE) -> list[dict]:
    """What the use case maps: the study rows, then the series or instance rows."""
    level = "series" if detail is Detail.SERIES else "instance"
    return answer["study"] + (answer[level] if detail is not Detail.STUDY else [])


def mapped(case: str, encoding: str, detail: Detail = Detail.INSTANCE):
    answer = recorded(case, encoding)
    return map_studies(
        rows(answer, detail), subject=SUBJECT, timezone="Europe/Zurich", detail=detail
    )


@pytest.mark.parametrize("encoding", ["latin1", "utf8"])
@pytest.mark.parametrize("detail", list(Detail))
def test_clean_studies_answer_with_no_issue(encoding, detail):
    # The sample roster's P-1001 (CT + SR, the demo's patient) and P-1002 (MR + SR): the
    # study row has IssuerOfPatientID (0010,0021), the series/instance rows do not.
    answer = recorded("clean", encoding)
    assert all("00100021" in r for r in answer["study"])
    assert not any("00100021" in r for r in answer["series"] + answer["instance"])
    result = mapped("clean", encoding, detail)
    assert result.issues == []
    assert [s["modality"] for s in result.studies] == [
        [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": c} for c in pair]
        for pair in (("MR", "SR"), ("CT", "SR"))
    ]
