"""The lookup's answers, as JSON for the operator page and as a FHIR R4 ``Parameters``
resource for ``Patient/{id}/$imaging-sync-status`` (https://hl7.org/fhir/R4/parameters.html:
a ``parameter`` has a ``value[x]`` or ``part``s, never both; parts nest).

Every Patient is a reference (``Patient/<id>``), every study a StudyInstanceUID; no
identifier value, name or birth date is in either shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sidecar.core.redaction import redact
from sidecar.core.sync_explanation import (
    STATES,
    Explanation,
    PacsCopy,
    StoredStudy,
    StudyFacts,
    SyncRecord,
    summary,
)


@dataclass(frozen=True)
class StudyRow:
    """One study of a lookup: what each side has, and why."""

    facts: StudyFacts
    explanation: Explanation

    def to_json(self) -> dict[str, Any]:
        return {
            "studyInstanceUid": self.facts.uid,
            "state": self.explanation.state,
            "explanation": self.explanation.text,
            "pacs": [_copy_json(c) for c in self.facts.pacs],
            "fhir": _stored_json(self.facts.stored),
        }

    def to_part(self) -> dict[str, Any]:
        parts = [
            _value("studyInstanceUid", "Oid", f"urn:oid:{self.facts.uid}"),
            _value("state", "Code", self.explanation.state),
            _value("explanation", "String", self.explanation.text),
            *(_copy_part(c) for c in self.facts.pacs),
        ]
        if self.facts.stored is not None:
            parts.append(_stored_part(self.facts.stored))
        return {"name": "study", "part": parts}


def order(rows: Iterable[StudyRow]) -> list[StudyRow]:
    """Problems first (sidecar.core.sync_explanation.STATES), then by UID."""
    rank = {state: i for i, state in enumerate(STATES)}
    return sorted(rows, key=lambda r: (rank.get(r.explanation.state, 99), r.facts.uid))


@dataclass(frozen=True)
class PatientReport:
    """One Patient: the PACS patients it maps to (PACS and identifier system only), what
    each side has, the ledger's record, the conflicts and the PACS that did not answer."""

    patient_id: str
    pacs_patients: tuple[tuple[str, str | None], ...]  # (PACS, identifier system)
    refused: tuple[str, ...]  # why an identifier cannot be sent to a PACS (never its value)
    conflicts: dict[str, tuple[str, ...]]  # another Patient's id -> the PACS it is claimed in
    unreachable: dict[str, str]  # PACS -> why it did not answer
    sync: SyncRecord | None
    studies: tuple[StudyRow, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "patient": f"Patient/{self.patient_id}",
            "pacsPatients": [{"pacs": p, "system": s} for p, s in self.pacs_patients],
            "refusedIdentifiers": list(self.refused),
            "conflicts": [
                {"patient": f"Patient/{other}", "pacs": list(pacs)}
                for other, pacs in sorted(self.conflicts.items())
            ],
            "unreachable": [{"pacs": p, "reason": r} for p, r in sorted(self.unreachable.items())],
            "sync": sync_json(self.sync),
            "counts": summary(r.explanation.state for r in self.studies),
            "studies": [r.to_json() for r in self.studies],
        }

    def to_parameters(self) -> dict[str, Any]:
        """``Parameters`` of ``$imaging-sync-status`` (OperationDefinition-imaging-sync-status)."""
        parameters: list[dict[str, Any]] = [
            _reference("patient", f"Patient/{self.patient_id}"),
        ]
        parameters += [
            {"name": "pacsPatient", "part": _parts(pacs=("String", p), system=("Uri", s))}
            for p, s in self.pacs_patients
        ]
        parameters += [_value("refusedIdentifier", "String", r) for r in self.refused]
        if self.sync is not None:
            parameters.append(sync_part(self.sync))
        for other, pacs in sorted(self.conflicts.items()):
            parts = [_reference("patient", f"Patient/{other}")]
            parts += [_value("pacs", "String", p) for p in pacs]
            parameters.append({"name": "conflict", "part": parts})
        for pacs, reason in sorted(self.unreachable.items()):
            parts = _parts(pacs=("String", pacs), reason=("String", reason))
            parameters.append({"name": "unreachable", "part": parts})
        for state, n in summary(r.explanation.state for r in self.studies).items():
            parts = _parts(state=("Code", state), studies=("UnsignedInt", n))
            parameters.append({"name": "count", "part": parts})
        parameters += [r.to_part() for r in self.studies]
        return {"resourceType": "Parameters", "parameter": parameters}


@dataclass(frozen=True)
class StudyReport:
    """One StudyInstanceUID: every PACS's copy (whoever's), the Patients whose identifiers
    name its PACS patient, the stored ImagingStudy, and the Patient in focus (the one
    holder, else the stored subject) with its ledger record."""

    uid: str
    pacs: tuple[PacsCopy, ...]
    holders: tuple[str, ...]
    stored: StoredStudy | None
    patient_id: str | None
    sync: SyncRecord | None
    explanation: Explanation
    unreachable: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "studyInstanceUid": self.uid,
            "state": self.explanation.state,
            "explanation": self.explanation.text,
            "pacs": [_copy_json(c) for c in self.pacs],
            "fhir": _stored_json(self.stored),
            "patients": [f"Patient/{p}" for p in self.holders],
            "patient": f"Patient/{self.patient_id}" if self.patient_id else None,
            "sync": sync_json(self.sync),
            "unreachable": [{"pacs": p, "reason": r} for p, r in sorted(self.unreachable.items())],
        }


def sync_json(sync: SyncRecord | None) -> dict[str, Any] | None:
    """The ledger's record of one Patient (what ``dicom-fhir jobs`` shows, by Patient id)."""
    if sync is None:
        return None
    return {
        "patient": f"Patient/{sync.patient_id}",
        "state": sync.state,
        "outcome": sync.outcome,
        "finishedAt": instant(sync.finished_at),
        "lastError": sync.last_error,
        "attempts": sync.attempts,
        "trigger": sync.reason,
        "detail": sync.detail,
        "pendingSince": instant(sync.pending_since),
        "conflictWith": [f"Patient/{p}" for p in sync.conflict_with],
    }


def sync_part(sync: SyncRecord) -> dict[str, Any]:
    parts = _parts(
        state=("Code", sync.state),
        outcome=("Code", sync.outcome),
        finished=("Instant", instant(sync.finished_at)),
        attempts=("UnsignedInt", sync.attempts),
        trigger=("String", sync.reason),
        lastError=("String", sync.last_error),
        detail=("String", sync.detail),
        pendingSince=("Instant", instant(sync.pending_since)),
    )
    parts += [_reference("conflictWith", f"Patient/{p}") for p in sync.conflict_with]
    return {"name": "sync", "part": parts}


def instant(ts: float | None) -> str | None:
    """An epoch time as an R4 ``instant`` (UTC, seconds)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _copy_json(copy: PacsCopy) -> dict[str, Any]:
    return {"pacs": copy.pacs, "series": copy.series, "instances": copy.instances}


def _copy_part(copy: PacsCopy) -> dict[str, Any]:
    parts = _parts(
        name=("String", copy.pacs),
        numberOfSeries=("UnsignedInt", copy.series),
        numberOfInstances=("UnsignedInt", copy.instances),
    )
    return {"name": "pacs", "part": parts}


def _stored_json(stored: StoredStudy | None) -> dict[str, Any] | None:
    if stored is None:
        return None
    return {
        "imagingStudy": f"ImagingStudy/{stored.id}",
        "subject": stored.subject,
        "status": stored.status,
        "series": stored.series,
        "instances": stored.instances,
        "lastUpdated": stored.last_updated,
    }


def _stored_part(stored: StoredStudy) -> dict[str, Any]:
    parts = [_reference("imagingStudy", f"ImagingStudy/{stored.id}")]
    if stored.subject:
        parts.append(_reference("subject", stored.subject))
    parts += _parts(
        status=("Code", stored.status),
        numberOfSeries=("UnsignedInt", stored.series),
        numberOfInstances=("UnsignedInt", stored.instances),
        lastUpdated=("Instant", stored.last_updated),
    )
    return {"name": "fhir", "part": parts}


def _value(name: str, kind: str, value: Any) -> dict[str, Any]:
    return {"name": name, f"value{kind}": value}


def _reference(name: str, reference: str) -> dict[str, Any]:
    return {"name": name, "valueReference": {"reference": reference}}


def _parts(**values: tuple[str, Any]) -> list[dict[str, Any]]:
    """Parts for the values that are set (a Parameters part without a value is invalid)."""
    return [_value(n, kind, v) for n, (kind, v) in values.items() if v is not None and v != ""]


def trigger_json(name: str, status: dict[str, Any]) -> dict[str, Any]:
    """One entry of ``usecases.health.trigger_report``: a trigger (cursor, lag, last success,
    last error, problem) or a source without steps (notify, operator: how many it asked)."""
    stepped = "interval" in status
    return {
        "name": name,
        "kind": "trigger" if stepped else "source",
        "enqueued": int(status.get("enqueued") or 0),
        "interval": status.get("interval"),
        "cursor": status.get("cursor"),
        "lag": status.get("lag"),
        "lagUnit": status.get("lag_unit"),
        "lastRun": instant(_float(status.get("last_run"))),
        "lastSuccess": instant(_float(status.get("last_ok"))),
        "lastError": redact(str(status["error"])) if status.get("error") else None,
        "problem": redact(str(status["problem"])) if status.get("problem") else None,
        "running": bool(status.get("holder")),
    }


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
