"""OperationOutcome issues for data the mapping skipped, changed or could not use.

Every record skipped and every value discarded or changed is one issue: where (the UIDs
of the level the attribute belongs to), what happened, the tag, and why (the rule it
broke, e.g. a VR of PS3.5 6.2). Diagnostics never echo a value that could be a patient
name or other demographic: invalid values themselves are not repeated; UIDs are.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydicom.datadict import keyword_for_tag

from .tags import tag_str

#: Issue type codes (http://hl7.org/fhir/issue-type) used here.
INVALID = "invalid"
REQUIRED = "required"
STRUCTURE = "structure"
CONFLICT = "conflict"
NOT_SUPPORTED = "not-supported"
#: Text the PACS (or the file) did not deliver whole: characters were lost upstream.
INCOMPLETE = "incomplete"

#: An issue before rendering: (code, diagnostics). Tuples dedupe and sort cheaply.
Issue = tuple[str, str]


def where(study_uid: str | None, series_uid: str | None = None, sop_uid: str | None = None) -> str:
    """A locator such as ``study 1.2 series 1.2.3 instance 1.2.3.4`` for diagnostics."""
    parts = []
    if study_uid:
        parts.append(f"study {study_uid}")
    if series_uid:
        parts.append(f"series {series_uid}")
    if sop_uid:
        parts.append(f"instance {sop_uid}")
    return " ".join(parts) or "record without UIDs"


@lru_cache(maxsize=256)
def tag_name(tag: int) -> str:
    """``Keyword (gggg,eeee)`` for diagnostics."""
    return f"{keyword_for_tag(tag) or 'attribute'} {tag_str(tag)}"


def issue(code: str, locator: str, tag: int, what: str, why: str | None = None) -> Issue:
    """An issue like ``study 1.2: invalid value ignored: StudyDate (0008,0020): not a
    date (DA)``; *why* (the rule broken) is never the value itself."""
    text = f"{locator}: {what} {tag_name(tag)}"
    return code, f"{text}: {why}" if why else text


def to_fhir(issue_: Issue) -> dict[str, Any]:
    """Render as an R4 OperationOutcome.issue (severity warning)."""
    code, diagnostics = issue_
    return {"severity": "warning", "code": code, "diagnostics": diagnostics}
