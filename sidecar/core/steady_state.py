"""Steady state in O(1) PACS calls: which stored studies need no series/instance query.

A fetch first asks the PACS for the patient's studies (one study-level QIDO). A study whose
study-level facts (what the mapping takes from that row: identifiers, modalities,
NumberOfStudyRelatedSeries (0020,1206) and ...Instances (0020,1208), dates, description,
referrer, procedure, reason, subject, status) equal the stored ImagingStudy's keeps its
stored series and instances; only the others are read down to the instances.
``ImagingStudy.endpoint`` is left out of the comparison: a study two PACS hold is stored
with both Endpoints and each PACS's row maps to its own; the fetch sets a reused study's
endpoints to the PACS that answered with it.

The trade-off: a change that leaves every study-level fact equal (an instance replaced
under the same counts, a corrected SeriesDescription) is not seen by a steady-state fetch.
The periodic resync (``SIDECAR_RESYNC_SECONDS``) reads every study in full and catches it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecar.core.mapping import Detail, imaging_study_id, map_studies, trim_to_detail

Resource = dict[str, Any]
_NOT_COMPARED = ("meta", "text", "endpoint")


def _study_level(resource: Mapping[str, Any]) -> dict[str, Any]:
    trimmed = trim_to_detail(dict(resource), Detail.STUDY)
    return {k: v for k, v in trimmed.items() if k not in _NOT_COMPARED}


def unchanged_studies(
    study_rows: Mapping[str, Mapping[str, Any]],
    stored: Mapping[tuple[str, str], Resource],
    *,
    subject: dict[str, Any],
    endpoint: dict[str, Any],
    timezone: str | None,
    accession_system: str | None,
) -> dict[str, Resource]:
    """Study UID -> the stored ImagingStudy, for every study whose row says nothing new."""
    reusable: dict[str, Resource] = {}
    for uid, row in study_rows.items():
        before = stored.get(("ImagingStudy", imaging_study_id(uid)))
        if before is None or "series" not in before:
            continue  # never stored in full: read it down to the instances
        mapped = map_studies(
            [row],
            subject=subject,
            endpoint=endpoint,
            timezone=timezone,
            accession_system=accession_system,
            detail=Detail.STUDY,
        )
        if len(mapped.studies) == 1 and _study_level(mapped.studies[0]) == _study_level(before):
            reusable[uid] = before
    return reusable


def shared_reuse_to_undo(
    answers: Mapping[str, tuple[set[str], set[str]]],
    holders: Mapping[str, set[str]],
) -> dict[str, set[str]]:
    """PACS name -> the StudyInstanceUIDs it reused but must read in full.

    ``answers``: per PACS, (the UIDs it reused, every UID it answered with);
    ``holders``: per stored study UID, the PACS its ``endpoint`` names. A reused study is
    kept only when the PACS that hold it now, the PACS that held it when it was stored and
    the PACS that reused it are the same: a study one PACS added, lost or changed is read
    in full from every PACS that has it, so the merged series are current.
    """
    undo: dict[str, set[str]] = {}
    reused_anywhere = set().union(*(reused for reused, _ in answers.values()))
    for uid in reused_anywhere:
        answering = {name for name, (_, held) in answers.items() if uid in held}
        reused_by = {name for name, (reused, _) in answers.items() if uid in reused}
        if not (reused_by == answering == holders.get(uid, answering)):
            for name in reused_by:
                undo.setdefault(name, set()).add(uid)
    return undo
