"""Characters lost upstream: the evidence rules (sidecar.core.mapping.text_loss), DICOM JSON
rows and pydicom Datasets in every character set the sidecar meets."""

from __future__ import annotations

import io

import pydicom
import pytest
from dicom_json import record
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from sidecar.core.mapping import map_studies
from sidecar.core.mapping.text_loss import (
    emptied_pn_group,
    has_replacement,
    is_narrow,
    pn_question_marks,
    question_marks_replace_characters,
)

STUDY = "1.2.826.0.1.3680043.8.498.5"
SERIES = f"{STUDY}.1"
CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.mark.parametrize(
    ("text", "lost"),
    [
        ("Follow-up?", False),
        ("Thorax-Röntgen: Follow-up?", False),
        ("Why??", False),
        ("Why?? Really??", False),
        ("?PE", False),  # the radiology query mark
        ("CTPA ?PE ?DVT", False),
        ("L4?L5", False),  # one lost dash looks like what people type
        ("??????", False),  # one lost word, likewise
        ("??CT ??", True),  # 頭部CT 造影
        ("?? ??????? ??????? with contrast", True),
        ("?????????? 5 ??", True),  # Аксиальные 5 мм
    ],
)
def test_question_marks(text, lost):
    assert question_marks_replace_characters(text) is lost


def test_pn_rules():
    assert emptied_pn_group("Yamada^Tarou=^=^")
    assert emptied_pn_group("=^")
    assert not emptied_pn_group("^")  # an unknown name, as senders write it
    assert not emptied_pn_group("^^^^")
    assert not emptied_pn_group("Yamada^Tarou=山田^太郎=やまだ^たろう")
    assert not emptied_pn_group("Yamada^Tarou")
    assert pn_question_marks("??????^????")
    assert not pn_question_marks("Doe^?")
    assert has_replacement("M\ufffdller")


def test_narrow_character_sets():
    assert is_narrow([]) and is_narrow([""]) and is_narrow(["ISO_IR 100"])
    assert is_narrow(["ISO_IR 144"]) and is_narrow(["ISO 2022 IR 6", "ISO 2022 IR 126"])
    assert not is_narrow(["ISO_IR 192"]) and not is_narrow(["", "ISO 2022 IR 87"])
    assert not is_narrow(["GB18030"])


def row(charset=None, **values):
    extra = {"SpecificCharacterSet": charset} if charset else {}
    return record(
        StudyInstanceUID=STUDY,
        SeriesInstanceUID=SERIES,
        SOPInstanceUID=f"{SERIES}.1",
        SOPClassUID=CT,
        Modality="CT",
        **extra,
        **values,
    )


def diagnostics(result) -> list[str]:
    return [i["diagnostics"] for i in result.issues]


@pytest.mark.parametrize("charset", ["ISO_IR 100", None, "ISO_IR 144"])
def test_question_marks_in_a_narrow_answer_are_named(charset):
    result = map_studies([row(charset, StudyDescription="??CT ??", SeriesDescription="Axial?")])
    (text,) = diagnostics(result)
    label = charset or "the default repertoire (no SpecificCharacterSet)"
    assert text.startswith(
        f"study {STUDY}: characters lost upstream in StudyDescription (0008,1030): "
        f"'?' stands in for characters; the PACS answered in {label}, "
    )
    assert result.issues[0]["code"] == "incomplete"
    assert result.studies[0]["description"] == "??CT ??"  # kept: it is what the PACS has


def test_question_marks_in_a_utf8_answer_are_the_data():
    assert map_studies([row("ISO_IR 192", StudyDescription="??CT ??")]).issues == []


def test_legitimate_question_marks_never_warn():
    rows = [
        row(
            "ISO_IR 100",
            StudyDescription="Thorax-Röntgen: Follow-up?",
            ReasonForTheRequestedProcedure="CTPA ?PE ?DVT",
            SeriesDescription="Why?? Really??",
        )
    ]
    assert map_studies(rows).issues == []


def test_replacement_characters_are_named_whatever_the_label():
    rows = [row("ISO_IR 192", SeriesDescription="M\ufffdller Thorax")]
    (text,) = diagnostics(map_studies(rows))
    assert text.startswith(
        f"study {STUDY} series {SERIES}: characters lost upstream in SeriesDescription "
        "(0008,103E): U+FFFD stands in for characters that could not be decoded; the PACS "
        "could not decode the stored text or carry it in ISO_IR 192"
    )


def test_an_emptied_name_group_without_a_label_is_named():
    pn = {"Alphabetic": "Suzuki^Ichiro", "Ideographic": "^", "Phonetic": "^"}
    result = map_studies([row(None, PerformingPhysicianName=pn)])
    (text,) = diagnostics(result)
    assert "characters lost upstream in PerformingPhysicianName (0008,1050)" in text
    assert result.studies[0]["series"][0]["performer"] == [{"actor": {"display": "Ichiro Suzuki"}}]


def test_utf8_text_under_a_latin1_label_is_kept_whole():
    # DICOM JSON is UTF-8 whatever SpecificCharacterSet says (PS3.18 F.2)
    pn = {"Alphabetic": "Yamada^Hanako", "Ideographic": "山田^花子"}
    result = map_studies(
        [row("ISO_IR 100", StudyDescription="頭部CT 造影", ReferringPhysicianName=pn)]
    )
    assert result.issues == []
    assert result.studies[0]["description"] == "頭部CT 造影"


def _file(ds: Dataset) -> Dataset:
    """Write and read back: pydicom encodes with, then decodes by, (0008,0005)."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CT
    ds.file_meta.MediaStorageSOPInstanceUID = f"{SERIES}.1"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def _dataset(charset: str, **values) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = SERIES
    ds.SOPInstanceUID = f"{SERIES}.1"
    ds.SOPClassUID = CT
    ds.Modality = "CT"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    ("charset", "description", "series", "referrer", "display"),
    [
        (
            "ISO_IR 192",
            "頭部CT 造影",
            "軸位 5mm 脳",
            "Yamada^Hanako=山田^花子",
            "Hanako Yamada (山田 花子)",
        ),
        ("ISO_IR 144", "КТ грудной клетки", "Аксиальные 5 мм", "Иванов^Иван", "Иван Иванов"),
        ("ISO_IR 126", "Αξονική τομογραφία", "Εγκάρσιες τομές", "Νικολάου^Μαρία", "Μαρία Νικολάου"),
        ("ISO_IR 100", "Thorax-Röntgen?", "Lunge ÄÖÜ ß «axial»", "Müller^Zoë", "Zoë Müller"),
    ],
)
def test_files_in_every_character_set_keep_their_text(
    charset, description, series, referrer, display
):
    ds = _file(
        _dataset(
            charset,
            StudyDescription=description,
            SeriesDescription=series,
            ReferringPhysicianName=referrer,
            PerformingPhysicianName=referrer,
        )
    )
    assert ds[0x00081030].value == description  # really decoded from its bytes
    result = map_studies([ds])
    assert result.issues == []
    (study,) = result.studies
    assert study["description"] == description and study["referrer"] == {"display": display}
    assert study["series"][0]["description"] == series
    assert study["series"][0]["performer"] == [{"actor": {"display": display}}]
    assert result == map_studies([ds.to_json_dict()])  # the same from DICOM JSON


def test_bytes_invalid_in_the_files_character_set_are_named():
    ds = _dataset("ISO_IR 192")
    ds[0x00081030] = RawDataElement(0x00081030, "LO", 6, b"ab\xff\xfecd", 0, False, True)
    with pytest.warns(UserWarning):  # pydicom: replaced with U+FFFD
        result = map_studies([_file(ds)])
    (text,) = diagnostics(result)
    assert text == (
        f"study {STUDY}: characters lost upstream in StudyDescription (0008,1030): U+FFFD "
        "stands in for characters that could not be decoded; the bytes are not valid in "
        "the record's character set (ISO_IR 192)"
    )


def test_a_file_whose_name_groups_were_emptied_before_it_was_written_is_named():
    result = map_studies(
        [_file(_dataset("ISO_IR 100", ReferringPhysicianName="Yamada^Hanako=^=^"))]
    )
    (text,) = diagnostics(result)
    assert text.endswith(
        "the record is in ISO_IR 100, a character set that cannot carry the text: it was "
        "lost before the file was written"
    )
