"""The ports: what the use cases and triggers need from the world, as typed Protocols.

Use cases (``sidecar/usecases``, ``subscription_handlers/usecases``) type against these and
never against an adapter; the composition root (``sidecar/wiring``) picks the adapters:

==================  ==============================================  ==========================
port                what it is                                      adapter today
==================  ==============================================  ==========================
:class:`Pacs`       one PACS's QIDO-RS, patient-exact               ``adapters/dicomweb.py``
:class:`ChangeLog`  a PACS's own change feed (vendor extra)         ``adapters/orthanc.py``
:class:`FhirServer` the FHIR R4 server (reads, one transaction)     ``adapters/fhir_store.py``
:class:`SyncQueue`  the durable per-patient sync queue              ``subscription_handlers/
                                                                    adapters/queue.py``
:class:`TriggerLease` a trigger's lease-guarded cursor              ``subscription_handlers/
                                                                    adapters/coordination.py``
:class:`AuditSink`  where AuditEvents are recorded (durably, at     ``subscription_handlers/
                    once); :class:`AuditOutbox` also drains them    adapters/audit_outbox.py``
==================  ==============================================  ==========================

A new kind of PACS (a DIMSE C-FIND bridge, a vendor API) is a new adapter that implements
:class:`Pacs`; nothing above it changes (docs/architecture.md, "Where new things plug in").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sidecar.core.qido import StudyCriteria
from sidecar.core.sync_state import PatientSyncState

#: One DICOM JSON record (PS3.18 F.2): tag -> {"vr": ..., "Value": [...]}.
Record = dict[str, Any]
#: One FHIR resource as JSON.
Resource = dict[str, Any]


@dataclass(frozen=True)
class PatientStudies:
    """Studies a PACS holds for one (PatientID, IssuerOfPatientID), after the exact checks."""

    records: list[Record]
    dropped: int  # records the PACS returned that were not exactly this patient's
    requests: int
    #: StudyInstanceUIDs (as sent, shortened) of this patient's records that are not UIDs
    invalid_uids: list[str] = field(default_factory=list)


class Pacs(Protocol):
    """One configured PACS, read with QIDO-RS (DICOM PS3.18 10.6). Thread-safe.

    Every method raises ``PacsUnavailable`` (502) or ``PacsTimeout`` (504) naming the PACS.
    """

    name: str

    def search_patient_studies(
        self, patient_id: str, issuer: str | None, criteria: StudyCriteria
    ) -> PatientStudies:
        """The studies of exactly this PatientID (0010,0020) and IssuerOfPatientID
        (0010,0021) within ``criteria``; what the PACS matched loosely is dropped."""
        ...

    def study_pages(
        self, filters: list[tuple[str, str]], *, fields: Iterable[str]
    ) -> Iterator[list[Record]]:
        """Study-level pages for filters built by :mod:`sidecar.core.qido` (the caller
        applies the exact checks): the backfill's date windows, the recent-studies poll."""
        ...

    def find_studies(self, study_uids: Iterable[str]) -> dict[str, list[Record]]:
        """Study-level records of these StudyInstanceUIDs, whoever's they are (several per
        UID when the PACS files one UID under several patients; none when it lacks it)."""
        ...

    def study_contents(self, study_uids: Iterable[str], level: str) -> dict[str, list[Record]]:
        """Series- or instance-level records (``level`` "series"/"instance") per study."""
        ...

    def study_contents_as_answered(
        self, study_uids: Iterable[str], level: str
    ) -> Iterator[tuple[str, list[Record]]]:
        """The same, each study as soon as its query is answered (a caller works on one
        study while the PACS still answers for the others); the first failure raises."""
        ...

    def ping(self) -> None:
        """One cheap request; raises when the PACS cannot answer."""
        ...

    def search(self, path: str, query: str) -> list[Record]:
        """One QIDO-RS answer for a path and query the imaging gateway validated."""
        ...

    def retrieve(self, path: str, query: str, headers: Mapping[str, str]) -> Retrieval:
        """A WADO-RS answer, streamed, for a path the imaging gateway validated."""
        ...

    def close(self) -> None: ...


class Retrieval(Protocol):
    """A PACS answer being streamed to a client: status, headers, then the bytes."""

    status: int
    headers: Mapping[str, str]

    def chunks(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Change:
    """One entry of a PACS change log."""

    seq: int
    change_type: str
    resource_type: str
    resource_id: str


class ChangeLog(Protocol):
    """A PACS's own change feed, for what DICOMweb has no word for (a vendor extra)."""

    name: str
    #: the change types that may bring a new or grown study (others are skipped)
    study_change_types: frozenset[str]

    def last(self) -> int:
        """The newest sequence number."""
        ...

    def since(self, seq: int, limit: int = 100) -> tuple[list[Change], int, bool]:
        """Changes after ``seq``: (changes, the sequence they cover up to, done?)."""
        ...

    def study_uid(self, change: Change) -> str | None:
        """The StudyInstanceUID a change is about (None: not a study change, or gone)."""
        ...

    def close(self) -> None: ...


class FhirServer(Protocol):
    """The FHIR R4 server as the sidecar uses it. Errors are ``FetchError`` subclasses
    (``FhirUnavailable`` 502/504, ``FhirConflict`` 409); reads of a missing resource give
    None, never an error."""

    base_url: str

    def read(self, resource_type: str, resource_id: str) -> Resource | None: ...

    def read_patient(self, patient_id: str) -> Resource:
        """The Patient, or ``PatientNotFound`` (404)."""
        ...

    def read_many(self, resource_type: str, ids: list[str]) -> dict[str, Resource]: ...

    def read_as(self, token: str, resource_type: str, resource_id: str) -> Resource | None:
        """A read with a caller's own token (None: missing, or not for this caller)."""
        ...

    def search_as(
        self, token: str, resource_type: str, params: dict[str, Any], *, limit: int
    ) -> list[Resource]:
        """One page of a search with a caller's own token: what the server shows it."""
        ...

    def was_deleted(self, resource_type: str, resource_id: str) -> bool:
        """Whether the server says the resource was deleted (410, or a DELETE in its
        history); a plain 404 is no proof."""
        ...

    def find_patients(self, token: str, *, limit: int = 2) -> list[Resource]:
        """Patients matching an ``identifier`` search token (escaped: core.fhir_values)."""
        ...

    def search(self, resource_type: str, params: dict[str, Any], *, limit: int) -> list[Resource]:
        """One page of matches (at most ``limit``)."""
        ...

    def iterate(self, resource_type: str, params: dict[str, Any]) -> Iterator[Resource]:
        """Every match, page by page."""
        ...

    def search_all(self, resource_type: str, params: dict[str, Any]) -> list[Resource]: ...

    def studies_of(self, patient_id: str) -> dict[str, Resource]:
        """Every ImagingStudy whose subject is this Patient, by id."""
        ...

    def studies_and_endpoints_of(
        self, patient_id: str
    ) -> tuple[dict[str, Resource], dict[str, Resource]]:
        """The same, and the Endpoints those studies reference, by id (one search)."""
        ...

    def transaction(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One transaction Bundle (all or nothing); the response entries in order."""
        ...

    def batch(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One batch Bundle: each entry succeeds or fails on its own (R4 3.1.0.11); the
        response entries in order (``response.status`` per entry). ``FhirUnavailable`` when
        the server cannot take it at all, ``FhirRefused`` when it refuses the whole Bundle."""
        ...

    def put(self, resource: Resource) -> Resource: ...

    def delete(self, resource_type: str, resource_id: str) -> None: ...

    def create_if_none_exist(self, resource: Resource, condition: str) -> tuple[str | None, bool]:
        """Conditional create: (the id of the match or the new resource, created?)."""
        ...

    def ping(self) -> None: ...

    def close(self) -> None: ...


class SyncQueue(Protocol):
    """The durable queue of per-patient syncs (notifications, triggers, operators)."""

    def submit(
        self,
        patient_id: str,
        fingerprint: str | None,
        *,
        reason: str = "update",
        refresh: bool = False,
        refresh_studies: Iterable[str] = (),
    ) -> str:
        """Record a request for a sync; ``queued``, ``coalesced`` or ``unchanged``."""
        ...

    def status(self) -> dict[str, Any]:
        """Counts per state (pending, queued, running, dead, conflict, ...)."""
        ...

    def trigger_statuses(self) -> dict[str, dict[str, Any]]:
        """Each trigger's recorded status: cursor, lag, last success, last error, holder."""
        ...

    def state(self, patient_id: str) -> PatientSyncState | None:
        """One Patient's ledger record (None: no sync was ever asked for, or it was dropped)."""
        ...

    def pending(self, limit: int = 100) -> list[PatientSyncState]: ...

    def dead_letters(self, limit: int = 100) -> list[PatientSyncState]: ...

    def conflicts(self, limit: int = 100) -> list[PatientSyncState]: ...

    def retry_dead(self, patient_ids: list[str] | None = None) -> list[str]:
        """Queue dead letters (and resolved conflicts) again; all when ``patient_ids`` is None."""
        ...

    def close(self) -> None: ...


class TriggerLease(Protocol):
    """A trigger's cursor, movable only while this runner holds the trigger's lease."""

    def cursor(self) -> str | None: ...

    def move(self, value: str) -> None:
        """Move the cursor; raises ``LeaseLost`` when another runner took over."""
        ...


class AuditSink(Protocol):
    """Where AuditEvents (``sidecar/core/audit.py``) are recorded on their way to FHIR.

    ``record`` is durable once it returns and cheap (a local write: it runs inside the
    caller's request); it never raises into that request: a failure is logged (without
    values) and counted (``sidecar_audit_failures_total``)."""

    def record(self, event: Resource) -> None: ...

    def record_all(self, events: Iterable[Resource]) -> None:
        """Several events in one local write (a fetch's ImagingStudies)."""
        ...


@dataclass(frozen=True)
class PendingEvent:
    """An event waiting in the outbox, as one stored version of its id."""

    key: str  # which version: removing it leaves a newer one of the same id in place
    event: Resource


class AuditOutbox(AuditSink, Protocol):
    """The durable outbox behind the sink, which the ``audit`` trigger drains to FHIR."""

    def pending(self, limit: int) -> list[PendingEvent]:
        """The oldest events waiting, at most ``limit``."""
        ...

    def remove(self, sent: Iterable[PendingEvent]) -> int:
        """Forget these versions (sent, or refused for good); a newer version recorded under
        the same id meanwhile stays. Returns how many were removed."""
        ...

    def count(self) -> int: ...


class BackfillCheckpoint(Protocol):
    """What a backfill has done, kept across kills (``sidecar/adapters/checkpoint.py``)."""

    path: Any  # where it is kept, for the report

    def window_done(self, label: str) -> bool: ...

    def patient_done(self, label: str, key: str) -> bool: ...

    @property
    def instances_done(self) -> int: ...

    def mark_patient(self, label: str, key: str, instances: int) -> None: ...

    def mark_window(self, label: str, instances: int) -> None: ...


class Progress(Protocol):
    """Where a long run shows how far it is (a terminal bar, a log line)."""

    def update(self, n: int, **postfix: Any) -> None: ...

    def close(self) -> None: ...


class Registration(Protocol):
    """The Subscription (and OperationDefinition) this sidecar keeps on the FHIR server."""

    notify_secret: str | None

    def subscription_status(self) -> dict[str, Any]:
        """``{"status": active|requested|error|off|missing|unknown, "differs"?, "reason"?}``."""
        ...


@dataclass
class StepReport:
    """What one trigger step did: syncs submitted, where the cursor is, how far behind."""

    enqueued: int = 0
    cursor: str | None = None
    lag: float | None = None  # in the trigger's own unit (changes, seconds)
    lag_unit: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Trigger(Protocol):
    """What makes FHIR follow the PACS: a ``step`` decides which Patients need a sync,
    submits them to the queue and moves its cursor. The worker runs each under a lease,
    every ``interval`` seconds (``subscription_handlers/entry/trigger_runner.py``)."""

    name: str
    interval: float

    def step(self, lease: TriggerLease) -> StepReport: ...
