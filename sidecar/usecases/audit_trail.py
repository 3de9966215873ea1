"""The gateway's retrievals, summarised: one AuditEvent per token, study, PACS and outcome.

A viewer reads a study as hundreds of WADO-RS requests (one per frame); an AuditEvent each
would bury the audit trail and cost a write per frame. :class:`RetrievalAggregator` records
the first request of a (token, study, PACS, outcome, kind) at once, so the access is on
record from its first byte, and then only counts: the same event (same ``id``, so the newer
``PUT AuditEvent/{id}`` replaces it) is recorded again with the new count and
``period.end`` at most every ``flush_every_seconds`` and once more when the window closes
(``window_seconds`` after its first request; the next request opens a new window, a new
event). Events are built by :func:`sidecar.core.audit.retrieval_event` (IHE BALP
PatientRead for WADO-RS, PatientQuery for QIDO-RS).

    retrievals = services.retrievals          # built by the composition root
    retrievals.seen(caller, "123", study_uid, "main", 200, "wado", address=remote_addr)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sidecar.core import audit
from sidecar.core.caller import Caller
from sidecar.ports import AuditSink, Resource
from sidecar.settings import Settings

log = logging.getLogger(__name__)


def observer_of(settings: Settings) -> audit.Observer:
    """This sidecar as the events' observer: its public URL, the FHIR server it writes to."""
    return audit.Observer(address=settings.public_url, fhir_base=settings.fhir.base_url)


Key = tuple[str, str, str, str, str]  # token, study, PACS, outcome, kind
MAX_WINDOWS = 10_000  # open windows kept; the oldest are recorded and forgotten past it


class NoAudit:
    """The sink when auditing is off (``SIDECAR_AUDIT_ENABLED=false``)."""

    def record(self, event: Resource) -> None:
        """Nothing is kept."""

    def record_all(self, events: Iterable[Resource]) -> None:
        """Nothing is kept."""


@dataclass
class _Window:
    """The requests of one key since ``first_at``, and how much of it is on record."""

    event_id: str
    caller: Caller | None
    patient_id: str | None
    study_uid: str
    pacs: str
    status: int
    kind: str
    address: str | None
    first_at: float
    last_at: float
    count: int = 1
    recorded_count: int = 0
    recorded_at: float = 0.0

    @property
    def dirty(self) -> bool:
        return self.count != self.recorded_count


class RetrievalAggregator:
    """Thread-safe; one per process. A daemon thread (started at the first request) records
    what is due every ``flush_every_seconds``, so a count is on record even when no further
    request comes; :meth:`close` records the rest."""

    def __init__(
        self,
        sink: AuditSink,
        window_seconds: float = 60.0,
        flush_every_seconds: float = 10.0,
        *,
        observer: audit.Observer = audit.SIDECAR,
        clock: Callable[[], float] = time.time,
        max_windows: int = MAX_WINDOWS,
        background: bool = True,
    ) -> None:
        self.sink = sink
        self.window = window_seconds
        self.flush_every = flush_every_seconds
        self.observer = observer
        self.clock = clock
        self.max_windows = max_windows
        self._windows: OrderedDict[Key, _Window] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._background = background

    def seen(
        self,
        caller: Caller | None,
        patient_id: str | None,
        study_uid: str,
        pacs: str,
        status: int,
        kind: str,
        *,
        address: str | None = None,
    ) -> None:
        """One gateway request (``kind`` ``wado`` or ``qido``) for ``study_uid`` of
        ``pacs``, answered with ``status``; never raises into the request."""
        now = self.clock()
        token = caller.key if caller is not None else "no-token"
        key = (token, study_uid, pacs, audit.outcome_code(status), kind)
        try:
            with self._lock:
                window = self._windows.get(key)
                if window is not None and now - window.first_at >= self.window:
                    self._close(key, window)
                    window = None
                if window is None:
                    window = _Window(
                        audit.retrieval_id(token, study_uid, pacs, status, now, kind),
                        caller,
                        patient_id,
                        study_uid,
                        pacs,
                        status,
                        kind,
                        address,
                        first_at=now,
                        last_at=now,
                    )
                    self._windows[key] = window
                    self._record(window)  # the first request: on record at once
                else:
                    window.count += 1
                    window.last_at = now
                    if now - window.recorded_at >= self.flush_every:
                        self._record(window)
                while len(self._windows) > self.max_windows:
                    self._close(*next(iter(self._windows.items())))
        except Exception:  # noqa: BLE001 - the audit never fails a retrieval
            log.exception("retrieval audit failed", extra={"pacs": pacs, "kind": kind})
        self._start()

    def flush(self) -> int:
        """Record what is due: counts older than ``flush_every_seconds`` on record, windows
        that closed (then forgotten). Returns how many events were recorded."""
        now = self.clock()
        recorded = 0
        with self._lock:
            for key, window in list(self._windows.items()):
                if now - window.first_at >= self.window:
                    recorded += self._close(key, window)
                elif window.dirty and now - window.recorded_at >= self.flush_every:
                    recorded += self._record(window)
        return recorded

    def close(self) -> None:
        """Stop the thread; record every count not yet on record."""
        self._stop.set()
        with self._lock:
            for key, window in list(self._windows.items()):
                self._close(key, window)

    @property
    def open_windows(self) -> int:
        return len(self._windows)

    # -- under the lock ---------------------------------------------------------------------

    def _close(self, key: Key, window: _Window) -> int:
        del self._windows[key]
        return self._record(window) if window.dirty else 0

    def _record(self, window: _Window) -> int:
        event = audit.retrieval_event(
            window.caller,
            window.patient_id,
            window.study_uid,
            window.pacs,
            window.status,
            window.count,
            _at(window.first_at),
            _at(window.last_at),
            window.kind,
            event_id=window.event_id,
            address=window.address,
            observer=self.observer,
        )
        self.sink.record(event)  # never raises (the AuditSink contract)
        window.recorded_count = window.count
        window.recorded_at = self.clock()
        return 1

    def _start(self) -> None:
        if self._thread is not None or self._stop.is_set() or not self._background:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="audit-retrievals", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_every):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - try again at the next tick
                log.exception("retrieval audit flush failed")


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
