"""Parsing and validation of DICOM value representations (PS3.5 6.2) into FHIR-ready values.

Every parser returns ``None`` for an absent *or* invalid value; callers decide whether an
invalid value is worth an OperationOutcome issue (see :mod:`sidecar.core.mapping.outcome`).
"""

from __future__ import annotations

import datetime as _dt
import re

# PS3.5 9.1: components of digits separated by dots, at most 64 characters. Leading zeros
# are forbidden by the standard but common in the wild and harmless in FHIR, so accepted.
_UID_RE = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_DA_RE = re.compile(r"(\d{4})\.?(\d{2})\.?(\d{2})")  # also the ACR-NEMA "YYYY.MM.DD" form
_TM_RE = re.compile(r"(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?")
_TZ_RE = re.compile(r"([+-])(\d{2})(\d{2})")
_IS_RE = re.compile(r"[+-]?\d{1,12}")
_CS_RE = re.compile(r"[A-Z0-9_ ]{1,16}")
_MODALITY_RE = re.compile(r"[A-Z0-9_]+")

#: FHIR ``unsignedInt`` upper bound (32-bit signed int range).
MAX_UNSIGNED_INT = 2_147_483_647

# Characters a FHIR string must not carry (C0 controls except TAB/LF/CR, DEL, lone
# surrogates), and whitespace other than space/TAB/LF/CR, which the R4 regex rejects.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_ODD_SPACE_RE = re.compile(r"[^\S \t\r\n]")


def clean_text(value: object) -> str | None:
    """Return *value* as a FHIR-safe string (trimmed, no control characters), or None.

    DICOM text VRs (LO, SH, ST, LT, UT, CS) are space- or NUL-padded; FHIR strings must
    not be empty and must match ``[ \\r\\n\\t\\S]+``.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        if isinstance(value, bytes | bytearray | dict | list):
            return None
        value = str(value)
    value = _ODD_SPACE_RE.sub(" ", _CONTROL_RE.sub("", value)).strip()
    return value or None


def has_control_characters(value: str) -> bool:
    """True if :func:`clean_text` would remove characters from *value* other than its
    padding (leading/trailing spaces and NULs, PS3.5 6.2): ESC of an undecoded ISO 2022
    sequence, FF, other C0 controls, DEL, lone surrogates."""
    return bool(_CONTROL_RE.search(value.strip(" \x00")))


#: Why a UID with a leading zero in a component is reported (kept: harmless in FHIR).
NONCONFORMANT_UID = "a component with a leading zero (PS3.5 9.1)"
_CONFORMANT_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def is_conformant_uid(value: str) -> bool:
    """Whether a UID follows PS3.5 9.1 exactly (no component starts with 0 unless it is 0)."""
    return bool(_CONFORMANT_UID.fullmatch(value))


def parse_uid(value: object) -> str | None:
    """A valid DICOM UID (PS3.5 9.1) with padding removed, else None."""
    if not isinstance(value, str):
        return None
    value = value.strip(" \x00")
    if len(value) > 64 or not _UID_RE.fullmatch(value):
        return None
    return value


def parse_da(value: object) -> str | None:
    """DA ``YYYYMMDD`` (PS3.5 Table 6.2-1) -> FHIR date ``YYYY-MM-DD``; None if invalid."""
    if not isinstance(value, str):
        return None
    m = _DA_RE.fullmatch(value.strip(" \x00"))
    if not m:
        return None
    try:
        d = _dt.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None
    return d.isoformat()


def parse_tm(value: object) -> tuple[int, int, int, str] | None:
    """TM ``HH[MM[SS[.F{1,6}]]]`` (also the ACR-NEMA ``HH:MM:SS`` form).

    Returns ``(hour, minute, second, fraction_digits)``; missing minutes/seconds are 0.
    A leap second (60) is not representable in FHIR time and is rejected.
    """
    if not isinstance(value, str):
        return None
    m = _TM_RE.fullmatch(value.strip(" \x00"))
    if not m:
        return None
    hour, minute, second = int(m[1]), int(m[2] or 0), int(m[3] or 0)
    if hour > 23 or minute > 59 or second > 59:
        return None
    return hour, minute, second, m[4] or ""


def parse_tz_offset(value: object) -> _dt.timedelta | None:
    """TimezoneOffsetFromUTC (0008,0201) ``&ZZXX`` -> offset; None if invalid.

    PS3.3 C.12.1.1.8 allows -12:00 .. +14:00.
    """
    if not isinstance(value, str):
        return None
    m = _TZ_RE.fullmatch(value.strip(" \x00"))
    if not m:
        return None
    hours, minutes = int(m[2]), int(m[3])
    if minutes > 59:
        return None
    delta = _dt.timedelta(hours=hours, minutes=minutes)
    if m[1] == "-":
        delta = -delta
    if not _dt.timedelta(hours=-12) <= delta <= _dt.timedelta(hours=14):
        return None
    return delta


def parse_dt(value: object) -> tuple[str, tuple[int, int, int, str] | None, str | None] | None:
    """DT ``YYYYMMDDHHMMSS.FFFFFF&ZZXX`` (PS3.5 Table 6.2-1), date part required.

    Returns ``(iso_date, time_or_None, offset_or_None)`` where offset is ``+HHMM`` text.
    Only full-date DT values are accepted (a year-only DT cannot become a FHIR instant).
    """
    if not isinstance(value, str):
        return None
    text = value.strip(" \x00")
    offset = None
    m = re.search(r"[+-]\d{4}$", text)
    if m:
        offset, text = m.group(), text[: m.start()]
        if parse_tz_offset(offset) is None:
            return None
    date = parse_da(text[:8])
    if date is None:
        return None
    time = None
    if len(text) > 8:
        time = parse_tm(text[8:])
        if time is None:
            return None
    return date, time, offset


def parse_unsigned(value: object) -> int | None:
    """IS (or a DICOM JSON number) -> FHIR ``unsignedInt``; None if invalid or negative."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = int(value)  # pydicom's IS is an int subclass; keep plain ints
    elif isinstance(value, float):
        if not value.is_integer():
            return None
        number = int(value)
    elif isinstance(value, str):
        text = value.strip(" \x00")
        if not _IS_RE.fullmatch(text):
            return None
        number = int(text)
    else:
        return None
    if not 0 <= number <= MAX_UNSIGNED_INT:
        return None
    return number


def parse_cs(value: object) -> str | None:
    """A Code String (PS3.5 CS: upper case, digits, space, underscore; <=16 chars)."""
    if not isinstance(value, str):
        return None
    value = value.strip(" \x00")
    return value if _CS_RE.fullmatch(value) else None


def parse_modality(value: object) -> tuple[str, bool] | None:
    """Modality (0008,0060) / ModalitiesInStudy (0008,0061) -> ``(code, normalised)``.

    A CS (PS3.5 6.2) is upper case; a lower-case code (``ct``) is unambiguous, so it is
    upper-cased and *normalised* is True (the caller says so). Padding is removed. The
    16-character CS limit is not enforced: FHIR codes have none, and refusing would drop
    the series. Anything but letters, digits and ``_`` (spaces inside, punctuation) is
    not a modality code: None.
    """
    if not isinstance(value, str):
        return None
    text = value.strip(" \x00")
    code = text.upper()
    if not _MODALITY_RE.fullmatch(code):
        return None
    return code, code != text


def pn_groups(value: object) -> tuple[str, str, str]:
    """Split a PN value ``alphabetic=ideographic=phonetic`` (PS3.5 6.2.1) into 3 groups."""
    if not isinstance(value, str):
        return "", "", ""
    groups = (value.split("=") + ["", ""])[:3]
    return groups[0], groups[1], groups[2]


def pn_components(group: str) -> list[str]:
    """The five components family^given^middle^prefix^suffix of one PN group, cleaned."""
    parts = (group.split("^") + [""] * 5)[:5]
    return [clean_text(p) or "" for p in parts]


def render_pn(value: object) -> str | None:
    """A readable display for a PN value (PS3.5 6.2.1): every component group kept.

    The alphabetic group reads ``Prefix Given Middle Family Suffix``, unless it is written
    in a CJK script (ISO_IR 192 allows that), where the family name comes first as in the
    ideographic and phonetic groups. Ideographic and phonetic groups follow in parentheses:
    ``Tarou Yamada (山田 太郎, やまだ たろう)``; nothing of the name is dropped.
    """
    rendered = [
        _render_group(group, eastern=index > 0) for index, group in enumerate(pn_groups(value))
    ]
    present = list(dict.fromkeys(r for r in rendered if r))
    if not present:
        return None
    first, rest = present[0], present[1:]
    return f"{first} ({', '.join(rest)})" if rest else first


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def _render_group(group: str, *, eastern: bool) -> str:
    family, given, middle, prefix, suffix = pn_components(group)
    family_first = eastern or bool(_CJK.search(group))
    order = (
        (prefix, family, given, middle, suffix)
        if family_first
        else (prefix, given, middle, family, suffix)
    )
    return " ".join(p for p in order if p)
