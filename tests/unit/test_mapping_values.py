"""DICOM value parsing (PS3.5 6.2) used by the mapping."""

from __future__ import annotations

import datetime as dt

import pytest

from sidecar.core.mapping.values import (
    clean_text,
    has_control_characters,
    parse_cs,
    parse_da,
    parse_dt,
    parse_modality,
    parse_tm,
    parse_tz_offset,
    parse_uid,
    parse_unsigned,
    render_pn,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2"),
        ("1.2.3\x00", "1.2.3"),
        (" 1.2.3 ", "1.2.3"),
        ("1." + "2" * 62, "1." + "2" * 62),  # exactly 64
        ("1." + "2" * 63, None),  # 65 characters
        ("1.2.abc", None),
        ("1..2", None),
        (".1.2", None),
        ("1.2.", None),
        ("", None),
        (123, None),
    ],
)
def test_parse_uid(raw, expected):
    assert parse_uid(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("20240131", "2024-01-31"),
        ("2024.01.31", "2024-01-31"),
        ("20240230", None),
        ("2024013", None),
        ("2024-01-31", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_da(raw, expected):
    assert parse_da(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("07", (7, 0, 0, "")),
        ("0730", (7, 30, 0, "")),
        ("073015", (7, 30, 15, "")),
        ("073015.123456", (7, 30, 15, "123456")),
        ("07:30:15", (7, 30, 15, "")),
        ("073015.1234567", None),
        ("240000", None),
        ("076000", None),
        ("073060", None),
        ("7", None),
    ],
)
def test_parse_tm(raw, expected):
    assert parse_tm(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+0100", dt.timedelta(hours=1)),
        ("-0530", -dt.timedelta(hours=5, minutes=30)),
        ("+1400", dt.timedelta(hours=14)),
        ("+1500", None),
        ("-1300", None),
        ("0100", None),
        ("+0160", None),
    ],
)
def test_parse_tz_offset(raw, expected):
    assert parse_tz_offset(raw) == expected


def test_parse_dt():
    assert parse_dt("20240131073015.5+0100") == ("2024-01-31", (7, 30, 15, "5"), "+0100")
    assert parse_dt("20240131") == ("2024-01-31", None, None)
    assert parse_dt("2024") is None
    assert parse_dt("20240131xx") is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12", 12),
        (" 7 ", 7),
        ("+3", 3),
        (5, 5),
        (5.0, 5),
        ("-1", None),
        (-1, None),
        ("1.5", None),
        (1.5, None),
        ("abc", None),
        (True, None),
        ("2147483648", None),
    ],
)
def test_parse_unsigned(raw, expected):
    assert parse_unsigned(raw) == expected


def test_parse_cs():
    assert parse_cs("CT ") == "CT"
    assert parse_cs("ct") is None
    assert parse_cs("A" * 17) is None


def test_render_pn_orders_readably_and_keeps_non_ascii():
    assert render_pn("Doe^John^Q^Dr.^Jr.") == "Dr. John Q Doe Jr."
    assert render_pn("Müller^Zoë") == "Zoë Müller"
    assert (
        render_pn("Yamada^Tarou=山田^太郎=やまだ^たろう")
        == "Tarou Yamada (山田 太郎, やまだ たろう)"
    )
    assert render_pn("山田^花子") == "山田 花子"  # a CJK alphabetic group: family first
    assert render_pn("=山田^太郎") == "山田 太郎"  # ideographic only: family first
    assert render_pn("^^^^") is None
    assert render_pn("") is None


def test_clean_text_removes_padding_and_controls():
    assert clean_text("  abc\x00 ") == "abc"
    assert clean_text("a\x1b$Bb") == "a$Bb"
    assert clean_text("a\x0cb\u2028c") == "ab c"  # FF removed, LS -> space
    assert clean_text("a\r\nb") == "a\r\nb"  # CR and LF are FHIR string characters
    assert clean_text("   ") is None
    assert clean_text(b"bytes") is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CT", ("CT", False)),
        (" CT \x00", ("CT", False)),
        ("ct", ("CT", True)),
        ("CT_PERFUSION_DYNAMIC", ("CT_PERFUSION_DYNAMIC", False)),  # > 16: kept
        ("C T", None),
        ("C-T", None),
        ("", None),
        (7, None),
    ],
)
def test_parse_modality(raw, expected):
    assert parse_modality(raw) == expected


def test_has_control_characters_ignores_padding():
    assert not has_control_characters("Axial\x00\x00 ")
    assert not has_control_characters("line one\r\nline two\tend")
    assert has_control_characters("a\x1b$Bb")
    assert has_control_characters("page\x0cbreak")


def test_a_uid_with_a_leading_zero_is_kept_and_named():
    from sidecar.core.mapping import map_studies

    record = {
        "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
        "0020000E": {"vr": "UI", "Value": ["1.2.3.04"]},
        "00080018": {"vr": "UI", "Value": ["1.2.3.4.05"]},
        "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
        "00080060": {"vr": "CS", "Value": ["CT"]},
    }
    result = map_studies([record], subject={"reference": "Patient/p"})
    (study,) = result.studies
    assert study["series"][0]["uid"] == "1.2.3.04"
    texts = " ".join(i["diagnostics"] for i in result.issues)
    assert "SeriesInstanceUID (0020,000E)" in texts and "SOPInstanceUID (0008,0018)" in texts
    assert "leading zero" in texts
