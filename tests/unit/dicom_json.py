"""Helpers to write DICOM JSON (PS3.18 F.2) fixtures by keyword."""

from __future__ import annotations

from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword


def el(keyword: str, *values: Any, vr: str | None = None) -> tuple[str, dict[str, Any]]:
    """One DICOM JSON element; PN strings become {"Alphabetic": ...} objects."""
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    vr = vr or dictionary_VR(tag)
    element: dict[str, Any] = {"vr": vr}
    if values:
        if vr == "PN":
            element["Value"] = [v if isinstance(v, dict) else {"Alphabetic": v} for v in values]
        else:
            element["Value"] = list(values)
    return f"{tag:08X}", element


def record(*elements: tuple[str, dict[str, Any]], **by_keyword: Any) -> dict[str, Any]:
    """A DICOM JSON object from elements and/or keyword=value pairs (value or list)."""
    data = dict(elements)
    for keyword, value in by_keyword.items():
        values = value if isinstance(value, list) else [value]
        key, element = el(keyword, *values)
        data[key] = element
    return data


def code_item(value: str, scheme: str, meaning: str) -> dict[str, Any]:
    """A Code Sequence Macro item."""
    return record(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)
