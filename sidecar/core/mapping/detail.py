"""``detail`` shapes an answer, never what is stored: an ImagingStudy trimmed to a depth.

``$fetch-imaging?detail=study|series|instance`` asks how deep the returned ImagingStudies
go; the stored resource is always the full mapping (FHIR R4 ImagingStudy.series and
ImagingStudy.series.instance), so alternating ``detail`` never creates a version.
"""

from __future__ import annotations

import copy
from typing import Any

from .imaging_study import Detail


def trim_to_detail(study: dict[str, Any], detail: Detail | str) -> dict[str, Any]:
    """A copy of ``study`` without ``series`` (study) or without ``series.instance``
    (series); ``meta``, counts and every study-level element are kept as they are."""
    depth = Detail(detail)
    if depth is Detail.INSTANCE or "series" not in study:
        return study
    trimmed = {k: v for k, v in study.items() if k != "series"}
    if depth is Detail.SERIES:
        trimmed["series"] = [
            {k: v for k, v in copy.deepcopy(s).items() if k != "instance"} for s in study["series"]
        ]
    return trimmed
