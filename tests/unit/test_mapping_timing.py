"""The started zone rule: (0008,0201), else the PACS's IANA zone, else date only."""

from __future__ import annotations

import pytest
from dicom_json import record

from sidecar.core.mapping import map_studies
from sidecar.core.mapping.timing import ZoneSource, load_zone, started

ZURICH = load_zone("Europe/Zurich")


def test_dicom_offset_wins_over_configured_zone():
    assert started("20240115", "101500", "-0500", ZURICH) == (
        "2024-01-15T10:15:00-05:00",
        ZoneSource.DICOM,
    )


def test_configured_zone_is_dst_aware():
    assert started("20240115", "101500", None, ZURICH)[0] == "2024-01-15T10:15:00+01:00"
    assert started("20240715", "101500", None, ZURICH)[0] == "2024-07-15T10:15:00+02:00"


def test_without_any_zone_only_the_date_is_kept_never_utc():
    assert started("20240115", "101500", None, None) == ("2024-01-15", ZoneSource.DATE_ONLY)


def test_fractions_and_short_times():
    assert started("20240115", "1015", "+0000", None)[0] == "2024-01-15T10:15:00+00:00"
    assert started("20240115", "101500.25", "+0130", None)[0] == "2024-01-15T10:15:00.25+01:30"


def test_invalid_offset_falls_back_to_zone_and_invalid_time_to_date():
    assert started("20240115", "101500", "+2500", ZURICH)[1] is ZoneSource.CONFIGURED
    assert started("20240115", "251500", "+0100", ZURICH) == ("2024-01-15", ZoneSource.DATE_ONLY)
    assert started("20241315", "101500", "+0100", ZURICH) is None


def test_unknown_zone_is_a_configuration_error():
    with pytest.raises(ValueError):
        load_zone("Mars/Olympus_Mons")
    with pytest.raises(ValueError):
        map_studies([], timezone="Not/AZone")


def test_study_started_prefers_dicom_offset_over_configured_zone_across_records():
    uid = "1.2.3"
    study_row = record(StudyInstanceUID=uid, StudyDate="20240115", StudyTime="101500")
    instance = record(
        StudyInstanceUID=uid,
        StudyDate="20240115",
        StudyTime="101500",
        TimezoneOffsetFromUTC="-0500",
    )
    for order in ([study_row, instance], [instance, study_row]):
        result = map_studies(order, timezone="Europe/Zurich")
        assert result.studies[0]["started"] == "2024-01-15T10:15:00-05:00"


def test_invalid_time_is_reported():
    result = map_studies(
        [record(StudyInstanceUID="1.2.3", StudyDate="20240115", StudyTime="99")],
        timezone="Europe/Zurich",
    )
    assert result.studies[0]["started"] == "2024-01-15"
    assert any("StudyTime (0008,0030)" in i["diagnostics"] for i in result.issues)
