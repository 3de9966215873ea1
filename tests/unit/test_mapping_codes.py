"""Body part (PS3.16 Annex L), laterality, SOP class and coding-scheme mapping."""

from __future__ import annotations

import re

import pytest
from pydicom.sr._concepts_dict import concepts

from sidecar.core.mapping.body_parts import BODY_PARTS, body_part_coding
from sidecar.core.mapping.codes import SNOMED, UMLS, concept_to_codeable, concept_to_coding
from sidecar.core.mapping.laterality import combine_image_lateralities, laterality_coding
from sidecar.core.mapping.sop_classes import sop_class_coding

# Verhoeff tables (SNOMED CT identifiers end in a Verhoeff check digit)
_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]


def verhoeff_ok(number: str) -> bool:
    check = 0
    for i, digit in enumerate(reversed(number)):
        check = _D[check][_P[i % 8][int(digit)]]
    return check == 0


def is_sctid_concept(code: str) -> bool:
    """Syntax of a SNOMED CT concept id: 6-18 digits, no leading zero, partition 00/10."""
    return bool(
        re.fullmatch(r"[1-9]\d{5,17}", code) and code[-3:-1] in ("00", "10") and verhoeff_ok(code)
    )


def test_verhoeff_helper_knows_good_and_bad_ids():
    assert is_sctid_concept("818981001")
    assert not is_sctid_concept("818981002")


SNOMED_ROWS = [(term, row) for term, row in BODY_PARTS.items() if row[0] == SNOMED]
ACTIVE_SCT = {
    code
    for keyword, entries in concepts["SCT"].items()
    if not keyword.endswith("_Inactive")
    for code in entries
}


def test_table_covers_annex_l():
    assert len(BODY_PARTS) >= 340
    assert {"ABDOMEN", "CHEST", "HEAD", "KNEE", "WHOLEBODY", "TAIL", "FETALPOLE"} <= set(BODY_PARTS)


@pytest.mark.parametrize(("term", "row"), SNOMED_ROWS, ids=[t for t, _ in SNOMED_ROWS])
def test_every_snomed_code_is_a_valid_active_concept_id(term, row):
    _, code, meaning = row
    assert term == term.upper() and len(term) <= 16
    assert is_sctid_concept(code), code
    assert code in ACTIVE_SCT, f"{term}: {code} not an active SCT code in PS3.16"
    assert meaning


@pytest.mark.parametrize(
    ("term", "code", "display"),
    [
        ("ABDOMEN", "818981001", "Abdomen"),
        ("CHEST", "816094009", "Chest"),
        ("HEAD", "69536005", "Head"),
        ("KNEE", "72696002", "Knee"),
        ("CSPINE", "122494005", "Cervical spine"),
        ("LSSPINE", "1217253001", "Lumbo-sacral spine"),
        ("PELVIS", "816092008", "Pelvis"),
        ("BREAST", "76752008", "Breast"),
        ("WHOLEBODY", "38266002", "Entire body"),
        ("HEADNECK", "774007", "Head and Neck"),
        ("ENDOCARDIAC", "80891009", "Endo-cardiac"),
        ("STIFLE", "116010006", "Stifle"),
    ],
)
def test_sample_rows(term, code, display):
    assert body_part_coding(term) == {"system": SNOMED, "code": code, "display": display}


def test_lower_case_and_padding_still_match():
    assert body_part_coding(" chest ")["code"] == "816094009"


def test_unknown_term_is_display_only():
    assert body_part_coding("L SPINE") == {"display": "L SPINE"}
    assert body_part_coding("FETALPOLE") == {"display": "Fetal pole"}
    assert body_part_coding("DISTALPHALANX")["system"] == UMLS


@pytest.mark.parametrize(
    ("value", "code", "display"),
    [("R", "24028007", "Right"), ("L", "7771000", "Left"), ("B", "51440002", "Right and left")],
)
def test_laterality(value, code, display):
    assert laterality_coding(value) == {"system": SNOMED, "code": code, "display": display}


def test_laterality_unpaired_and_invalid_map_to_nothing():
    assert laterality_coding("U") is None
    assert laterality_coding("X") is None


def test_image_lateralities_combine():
    assert combine_image_lateralities(["L", "L", "U"]) == "L"
    assert combine_image_lateralities(["L", "R"]) == "B"
    assert combine_image_lateralities(["U"]) is None


def test_sop_class_coding():
    assert sop_class_coding("1.2.840.10008.5.1.4.1.1.2") == {
        "system": "urn:ietf:rfc:3986",
        "code": "urn:oid:1.2.840.10008.5.1.4.1.1.2",
        "display": "CT Image Storage",
    }
    assert "display" not in sop_class_coding("1.2.3.4")


def test_coding_schemes():
    assert concept_to_codeable(("LN", "24627-2", "CT Chest")) == {
        "coding": [{"system": "http://loinc.org", "code": "24627-2", "display": "CT Chest"}],
        "text": "CT Chest",
    }
    dcm = concept_to_codeable(("DCM", "113014", "Study"))["coding"][0]
    assert dcm["system"] == "http://dicom.nema.org/resources/ontology/DCM"
    assert concept_to_codeable(("99LOCAL", "X1", "Local thing")) == {
        "text": "Local thing (99LOCAL X1)"
    }
    # legacy SNOMED-RT is translated to SNOMED CT
    assert concept_to_coding(("SRT", "T-D4000", "Abdomen"))["system"] == SNOMED
    assert concept_to_coding(("99LOCAL", "X1", "Local")) == {"display": "Local (99LOCAL X1)"}
    assert concept_to_coding(("99LOCAL", "X1", None)) == {"display": "99LOCAL X1"}
    assert concept_to_coding(("SRT", "T-NOPE", "Unknown")) == {"display": "Unknown (SRT T-NOPE)"}
