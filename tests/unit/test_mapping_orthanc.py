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

from sidecar.core.mapping import Detail, map_studies

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


HOSTILE = "1.2.826.0.1.3680043.8.498.4242.1"


def issue_texts(result) -> list[str]:
    return [i["diagnostics"] for i in result.issues]


@pytest.mark.parametrize("encoding", ["latin1", "utf8"])
def test_hostile_values_are_each_named_or_kept(encoding):
    answer = recorded("hostile", encoding)
    result = mapped("hostile", encoding)
    (study,) = result.studies
    texts = issue_texts(result)
    s1, s2, s3, s4, s5 = (f"{HOSTILE}.{n}" for n in range(1, 6))
    at = f"study {HOSTILE}"
    empty_array = "the PACS sent an empty Value array"
    assert sorted(texts) == sorted(
        [
            # Orthanc answers an IS it cannot parse ('abc', '1.5', '1e3') with "Value": []
            f"{at} series {s1} instance {s1}.1: value ignored: InstanceNumber (0020,0013): "
            f"{empty_array} (it could not render the stored value as a number)",
            f"{at} series {s1} instance {s1}.2: value ignored: InstanceNumber (0020,0013): "
            f"{empty_array} (it could not render the stored value as a number)",
            f"{at} series {s1}: value ignored: SeriesNumber (0020,0011): "
            f"{empty_array} (it could not render the stored value as a number)",
            f"{at} series {s5}: value ignored: SeriesNumber (0020,0011): "
            f"{empty_array} (it could not render the stored value as a number)",
            f"{at} series {s1}: value normalised to upper case: Modality (0008,0060): "
            "a code string is upper case (CS, PS3.5 6.2)",
            f"{at}: value normalised to upper case: ModalitiesInStudy (0008,0061): "
            "a code string is upper case (CS, PS3.5 6.2)",
            f"{at} series {s3} instance {s3}.1: invalid value ignored: InstanceNumber "
            "(0020,0013): not an unsigned integer (IS, PS3.5 6.2; FHIR unsignedInt)",
            f"{at} series {s2}: series and its 1 instance skipped, missing Modality "
            "(0008,0060): R4 requires series.modality",
        ]
    )
    series = {s["uid"]: s for s in study["series"]}
    assert series[s1]["modality"]["code"] == "CT" and "number" not in series[s1]
    assert series[s5]["modality"]["code"] == "CT"  # ' CT': CS padding
    assert series[s4]["modality"]["code"] == "CT_PERFUSION_DYNAMIC"  # > 16: kept
    assert series[s1]["description"] == ("Axial soft tissue " * 6).strip()  # > LO's 64: kept
    assert study["identifier"][1]["value"] == "ACC-0123456789-OVERLONG"  # > SH's 16: kept
    assert s2 not in series
    # Orthanc leaves out a main DICOM tag longer than 256 characters, so the 10 KB
    # StudyDescription never reaches the mapping: nothing to map, nothing to name.
    assert "00081030" not in answer["study"][0] and "description" not in study
    # ... and wraps an IS above 2^31 - 1 to 32 bits: 99999999999 arrives as a valid number.
    (wrapped,) = [r for r in answer["instance"] if r["00080018"]["Value"] == [f"{s1}.3"]]
    assert wrapped["00200013"]["Value"] == [1215752191]
    assert "Hostile" not in "".join(texts) and "Rita" not in "".join(texts)


CS = "1.2.826.0.1.3680043.8.498.4242"
#: What the stored files held (ISO_IR 192, 144, 126 and 100 respectively).
STORED_TEXT = {
    f"{CS}.192": (
        "頭部CT 造影",
        "軸位 5mm 脳",
        "Hanako Yamada (山田 花子, やまだ はなこ)",  # every group kept (values.render_pn)
        "Ichiro Suzuki (鈴木 一郎, すずき いちろう)",
    ),
    f"{CS}.144": ("КТ грудной клетки", "Аксиальные 5 мм", "Иван Иванов", "Анна Петрова"),
    f"{CS}.126": (
        "Αξονική τομογραφία θώρακα",
        "Εγκάρσιες τομές",
        "Γιώργος Παπαδόπουλος",
        "Μαρία Νικολάου",
    ),
    f"{CS}.100": ("Thorax-Röntgen: Follow-up?", "Lunge ÄÖÜ ß «axial»", "Zoë Müller", "Åsa Øster"),
}


def texts_of(study: dict) -> tuple:
    (series,) = study["series"]
    return (
        study.get("description"),
        series.get("description"),
        study.get("referrer", {}).get("display"),
        series.get("performer", [{}])[0].get("actor", {}).get("display"),
    )


def lost_text_issues(result) -> list[str]:
    return [i["diagnostics"] for i in result.issues if i["code"] == "incomplete"]


@pytest.mark.parametrize(
    ("encoding", "label", "whole"),
    [
        ("utf8", "ISO_IR 192", {"192", "144", "126", "100"}),
        ("cyrillic", "ISO_IR 144", {"144"}),
        ("greek", "ISO_IR 126", {"126"}),
        ("latin1", "ISO_IR 100", {"100"}),
    ],
)
def test_text_in_every_character_set(encoding, label, whole):
    answer = recorded("charsets", encoding)
    assert {r["00080005"]["Value"][0] for r in answer["study"] + answer["instance"]} == {label}
    result = mapped("charsets", encoding)
    studies = {s["id"]: s for s in result.studies}
    for n in whole:  # the answer's character set carries the text: kept exactly
        study = studies[f"{CS}.{n}"]
        assert texts_of(study) == STORED_TEXT[f"{CS}.{n}"]
        assert study["interpreter"] == [{"display": STORED_TEXT[f"{CS}.{n}"][2]}]
    lost = lost_text_issues(result)
    if "192" in whole:
        assert lost == [] and result.issues == []
        return
    # Orthanc drops what its DefaultEncoding cannot carry. The Japanese study shows it:
    # its PN ideographic and phonetic groups arrive as '^'.
    advice = (
        f"an ideographic or phonetic name group arrived as delimiters only; the PACS "
        f"answered in {label}, a character set that cannot carry the text, so other text "
        "of this record may be incomplete too; have the PACS answer in UTF-8 (ISO_IR 192; "
        'Orthanc: "DefaultEncoding": "Utf8")'
    )
    at = f"study {CS}.192"
    assert sorted(lost) == sorted(
        [
            f"{at}: characters lost upstream in ReferringPhysicianName (0008,0090): {advice}",
            f"{at}: characters lost upstream in NameOfPhysiciansReadingStudy (0008,1060): {advice}",
            f"{at}: characters lost upstream in PatientName (0010,0010): {advice}",
            f"{at} series {CS}.192.1: characters lost upstream in PerformingPhysicianName "
            f"(0008,1050): {advice}",
        ]
    )
    assert result.issues == [i for i in result.issues if i["code"] == "incomplete"]
    assert texts_of(studies[f"{CS}.192"])[0] == "CT"  # '頭部CT 造影': the rest vanished
    # Text that vanished without a mark cannot be told from text that was never there:
    # Cyrillic and Greek in Latin-1 (names become '^'), Latin-1 accents in Cyrillic or
    # Greek ('Müller^Zoë' becomes 'Mller^Zo'). No issue claims anything about them.
    for n in {"144", "126", "100"} - whole:
        assert not any(f"study {CS}.{n}" in text for text in lost)
        assert texts_of(studies[f"{CS}.{n}"]) != STORED_TEXT[f"{CS}.{n}"]
    assert "Yamada" not in "".join(lost) and "山田" not in "".join(lost)
