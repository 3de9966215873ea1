"""The audit outbox: AuditEvents kept in the queue's own storage until FHIR has them.

``record`` is what a request calls (``$fetch-imaging``, the gateway, a sync's writes): one
local write, durable when it returns, so nothing is lost while the FHIR server is down; the
``audit`` trigger (``subscription_handlers/usecases/triggers/audit.py``) drains the oldest
events in batches. Recording an id again replaces the waiting event (the gateway's
aggregated retrievals re-record one id as their count grows); the drain removes only the
version it sent, so a newer one recorded meanwhile is sent next time.

Two stores with one interface, beside the ledger and the trigger store:

- SQLite: a ``sidecar_audit`` table in the queue's file (WAL, ``synchronous=FULL``: a
  committed event survives power loss; one fsync per ``record_all``);
- Redis: ``<prefix>:audit:events`` (id -> event), ``:versions`` (id -> version) and
  ``:order`` (a sorted set, oldest first): as durable as that Redis is configured to be
  (appendonly for a committed event to survive its restart).

A failure to record is logged (the error's kind, never the event) and counted in
``sidecar_audit_failures_total``; it never reaches the request that recorded.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from sidecar.ports import AuditOutbox, PendingEvent, Resource
from sidecar.settings import SyncSettings
from subscription_handlers.adapters.sqlite_file import SqliteFile

log = logging.getLogger(__name__)

RECORDED = Counter("sidecar_audit_recorded_total", "AuditEvents recorded in the outbox")
FAILURES = Counter(
    "sidecar_audit_failures_total", "AuditEvents that could not be recorded (lost)", ["store"]
)


def _encoded(event: Resource) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def _record_safely(
    store: str, events: Iterable[Resource], write: Callable[[list[Resource]], None]
) -> None:
    """Write the events in one local write; a failure is logged (its kind, never an event)
    and counted, never raised into the request that records (the AuditSink contract)."""
    events = list(events)
    if not events:
        return
    try:
        write(events)
    except Exception as exc:  # noqa: BLE001 - never into the caller's request
        FAILURES.labels(store).inc(len(events))
        log.error(
            "audit events not recorded",
            extra={"store": store, "count": len(events), "error": type(exc).__name__},
        )
        return
    RECORDED.inc(len(events))


class SqliteAuditOutbox(SqliteFile):
    """A ``sidecar_audit`` table in the queue's SQLite file; ``seq`` orders it and names the
    version (a replaced id gets a new ``seq``)."""

    STORE = "sqlite"

    def __init__(self, path: Path | str, *, timeout: float = 30.0) -> None:
        super().__init__(path, timeout=timeout)
        with self._transaction() as conn:
            conn.execute(
                "create table if not exists sidecar_audit ("
                " seq integer primary key autoincrement, id text not null unique,"
                " event text not null, recorded_at real not null)"
            )

    def record(self, event: Resource) -> None:
        self.record_all([event])

    def record_all(self, events: Iterable[Resource]) -> None:
        _record_safely(self.STORE, events, self._insert)

    def _insert(self, events: list[Resource]) -> None:
        rows = [(e["id"], _encoded(e), time.time()) for e in events]
        with self._transaction() as conn:
            conn.executemany(
                "insert or replace into sidecar_audit (id, event, recorded_at) values (?, ?, ?)",
                rows,
            )

    def pending(self, limit: int) -> list[PendingEvent]:
        rows = self._conn().execute(
            "select seq, event from sidecar_audit order by seq limit ?", (limit,)
        )
        return [PendingEvent(str(seq), json.loads(event)) for seq, event in rows]

    def remove(self, sent: Iterable[PendingEvent]) -> int:
        seqs = [(int(p.key),) for p in sent]
        with self._transaction() as conn:
            before = conn.total_changes
            conn.executemany("delete from sidecar_audit where seq = ?", seqs)
            return conn.total_changes - before

    def count(self) -> int:
        return self._conn().execute("select count(*) from sidecar_audit").fetchone()[0]


# Remove an event only while the stored version is the one that was sent.
_REMOVE = """
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('hget', KEYS[2], ARGV[i]) == ARGV[i + 1] then
    redis.call('hdel', KEYS[1], ARGV[i])
    redis.call('hdel', KEYS[2], ARGV[i])
    redis.call('zrem', KEYS[3], ARGV[i])
    removed = removed + 1
  end
end
return removed
"""


def open_outbox(settings: SyncSettings) -> AuditOutbox:
    """The outbox in the queue's storage: its Redis (the ledger's key prefix, a connection
    of its own) or a table of its SQLite file."""
    if settings.redis_url:
        import redis

        client = redis.Redis.from_url(settings.redis_url.get_secret_value())
        prefix = f"dicom-fhir.sync.{settings.queue_name}"
        return RedisAuditOutbox(client, prefix, owns_client=True)
    assert settings.queue_path is not None  # Settings fills it in from SIDECAR_DATA_DIR
    return SqliteAuditOutbox(settings.queue_path)


class RedisAuditOutbox:
    """Events in the queue's Redis under ``<prefix>:audit:*`` (the ledger's prefix)."""

    STORE = "redis"

    def __init__(self, client: Any, prefix: str, *, owns_client: bool = False) -> None:
        self.redis = client
        self._owns_client = owns_client
        self._events = f"{prefix}:audit:events"
        self._versions = f"{prefix}:audit:versions"
        self._order = f"{prefix}:audit:order"
        self._remove = client.register_script(_REMOVE)

    def record(self, event: Resource) -> None:
        self.record_all([event])

    def record_all(self, events: Iterable[Resource]) -> None:
        _record_safely(self.STORE, events, self._insert)

    def _insert(self, events: list[Resource]) -> None:
        with self.redis.pipeline(transaction=True) as pipe:
            now = time.time()
            for event in events:
                pipe.hset(self._events, event["id"], _encoded(event))
                pipe.hset(self._versions, event["id"], uuid.uuid4().hex)
                pipe.zadd(self._order, {event["id"]: now}, nx=True)
            pipe.execute()

    def pending(self, limit: int) -> list[PendingEvent]:
        ids = self.redis.zrange(self._order, 0, limit - 1)
        if not ids:
            return []
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(self._events, ids)
            pipe.hmget(self._versions, ids)
            events, versions = pipe.execute()
        return [
            PendingEvent(f"{_text(i)}\n{_text(v)}", json.loads(e))
            for i, e, v in zip(ids, events, versions, strict=True)
            if e is not None and v is not None
        ]

    def remove(self, sent: Iterable[PendingEvent]) -> int:
        args = [part for p in sent for part in p.key.split("\n", 1)]
        if not args:
            return 0
        return int(self._remove(keys=[self._events, self._versions, self._order], args=args))

    def count(self) -> int:
        return int(self.redis.zcard(self._order))

    def close(self) -> None:
        if self._owns_client:
            self.redis.close()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
