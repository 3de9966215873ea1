"""One ImagingStudy from the answers of several PACS that hold the same study.

A StudyInstanceUID (0020,000D) names one study wherever it is stored, so a study two
PACS hold is one ImagingStudy (docs/fetch-imaging.md). Each PACS may
hold part of it (a partial copy, a series sent to one archive only): the series are the
union by SeriesInstanceUID (0020,000E), the instances of a series the union by
SOPInstanceUID (0008,0018), ``modality`` the union of codes, ``endpoint`` every PACS's.
The counts (``numberOfSeries``, ``numberOfInstances``) are the largest of what either PACS
said and what the union holds. Everything else is the first PACS's (settings order).
"""

from __future__ import annotations

import copy
from typing import Any

Resource = dict[str, Any]


def _union(first: list[Any], second: list[Any], key: Any) -> list[Any]:
    seen = {key(item) for item in first}
    return [*first, *(item for item in second if key(item) not in seen)]


def _count(*values: Any) -> int | None:
    known = [v for v in values if isinstance(v, int)]
    return max(known) if known else None


def _ordered(items: list[Resource]) -> list[Resource]:
    """The mapping's order: by number (unnumbered last), then UID."""
    return sorted(items, key=lambda s: (s.get("number") is None, s.get("number", 0), s["uid"]))


def _merge_series(first: Resource, second: Resource) -> Resource:
    merged = copy.deepcopy(first)
    if "instance" in first or "instance" in second:
        instances = _union(first.get("instance", []), second.get("instance", []), _uid)
        merged["instance"] = _ordered(copy.deepcopy(instances))
    n = _count(
        first.get("numberOfInstances"),
        second.get("numberOfInstances"),
        len(merged.get("instance", [])),
    )
    if n:
        merged["numberOfInstances"] = n
    return merged


def _uid(item: Resource) -> str:
    return str(item["uid"])


def _code(coding: Resource) -> tuple[str, str]:
    return (str(coding.get("system", "")), str(coding.get("code", "")))


def merge_studies(first: Resource, second: Resource) -> Resource:
    """``first`` and ``second`` (the same study from two PACS) as one ImagingStudy."""
    merged = copy.deepcopy(first)
    for element, key in (("endpoint", lambda r: r.get("reference")), ("modality", _code)):
        values = _union(first.get(element, []), second.get(element, []), key)
        if values:
            merged[element] = copy.deepcopy(values)
    series: list[Resource] = []
    if "series" in first or "series" in second:
        by_uid = {s["uid"]: s for s in first.get("series", [])}
        for one in second.get("series", []):
            mine = by_uid.get(one["uid"])
            by_uid[one["uid"]] = _merge_series(mine, one) if mine else copy.deepcopy(one)
        series = merged["series"] = _ordered(list(by_uid.values()))
    held = sum(s.get("numberOfInstances", 0) for s in series)
    for element, union in (("numberOfSeries", len(series)), ("numberOfInstances", held)):
        n = _count(first.get(element), second.get(element), union or None)
        if n is not None:
            merged[element] = n
    return merged
