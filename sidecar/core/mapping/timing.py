"""Study/series start times: DA + TM + zone -> FHIR dateTime.

FHIR requires a zone whenever a time is given (R4 dateTime). The zone comes from, in order:

1. TimezoneOffsetFromUTC (0008,0201) of the record (PS3.3 C.12.1.1.8);
2. the PACS's configured IANA zone, applied to the local date and time (DST aware);
3. nothing: the result keeps date precision only. ``+00:00`` is never assumed.
"""

from __future__ import annotations

import datetime as _dt
from enum import IntEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .values import parse_da, parse_tm, parse_tz_offset


class ZoneSource(IntEnum):
    """Where a start time's zone came from; higher is better evidence."""

    DATE_ONLY = 0
    CONFIGURED = 1
    DICOM = 2


@lru_cache(maxsize=64)
def load_zone(name: str) -> ZoneInfo:
    """The IANA zone *name*; raises ValueError for an unknown zone (a configuration error)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone: {name!r}") from exc


def _format_offset(delta: _dt.timedelta) -> str:
    minutes = int(delta.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def started(
    date: object,
    time: object = None,
    tz_offset: object = None,
    zone: ZoneInfo | None = None,
) -> tuple[str, ZoneSource] | None:
    """FHIR dateTime for DA *date*, TM *time* and the zone rule above.

    Returns ``(value, zone_source)``, or None when the date is absent or invalid.
    An invalid time or offset degrades (to date only, or to the configured zone) rather
    than failing; the caller reports the invalid value.
    """
    iso_date = parse_da(date)
    if iso_date is None:
        return None
    parsed = parse_tm(time)
    if parsed is None:
        return iso_date, ZoneSource.DATE_ONLY
    hour, minute, second, fraction = parsed
    clock = f"{hour:02d}:{minute:02d}:{second:02d}" + (f".{fraction}" if fraction else "")
    offset = parse_tz_offset(tz_offset)
    if offset is not None:
        return f"{iso_date}T{clock}{_format_offset(offset)}", ZoneSource.DICOM
    if zone is not None:
        local = _dt.datetime.fromisoformat(f"{iso_date}T{hour:02d}:{minute:02d}:{second:02d}")
        utc_offset = local.replace(tzinfo=zone).utcoffset()
        if utc_offset is not None:
            return f"{iso_date}T{clock}{_format_offset(utc_offset)}", ZoneSource.CONFIGURED
    return iso_date, ZoneSource.DATE_ONLY
