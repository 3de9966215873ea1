"""Where the sync's triggers keep what must survive a restart, beside the queue's records.

For each trigger (a PACS change feed, the deletion sweep, the catch-up scan, the resync):

- a **lease**: one process at a time runs it (several replicas share a Redis queue); a
  holder renews it, a killed holder's lease is taken over when it expires, or at once when
  the holder was a process of this host that no longer runs;
- a **cursor** (e.g. Orthanc's change sequence, the last ``Patient._lastUpdated`` seen),
  advanced only after what it covers was enqueued, so a kill -9 skips nothing, and only by
  the lease's holder (:class:`Lease`): a holder that stalled past its lease (a paused VM, a
  stopped process) and lost it to another cannot move the cursor back when it wakes;
- its **status** for ``/healthz``, ``/metrics`` and ``dicom-fhir check``/``jobs``: when it
  last ran and succeeded, its lag, its last error, how many syncs it enqueued.

Two stores with one interface: a table in the queue's SQLite file, or keys in its Redis.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from subscription_handlers.adapters.sqlite_file import SqliteFile

DeadOwner = Callable[[str], bool]


class TriggerStore(Protocol):
    def acquire(self, name: str, owner: str, ttl: float, is_dead: DeadOwner) -> bool: ...

    def renew(self, name: str, owner: str, ttl: float) -> bool: ...

    def release(self, name: str, owner: str) -> None: ...

    def holder(self, name: str) -> str | None: ...

    def cursor(self, name: str) -> str | None: ...

    def set_cursor(self, name: str, value: str, owner: str | None = None) -> bool: ...

    def update_status(self, name: str, changes: dict[str, Any], enqueued: int = 0) -> None: ...

    def statuses(self) -> dict[str, dict[str, Any]]: ...

    def close(self) -> None: ...


class SqliteTriggerStore(SqliteFile):
    """A ``sidecar_trigger`` table in the queue's SQLite file (WAL, synchronous=FULL)."""

    def __init__(self, path: Path | str, *, timeout: float = 30.0) -> None:
        super().__init__(path, timeout=timeout)
        with self._transaction() as conn:
            conn.execute(
                "create table if not exists sidecar_trigger ("
                " name text primary key, owner text, lease_until real, cursor text,"
                " status text not null default '{}', enqueued integer not null default 0)"
            )

    def _row(self, conn: sqlite3.Connection, name: str) -> tuple[Any, ...]:
        conn.execute("insert or ignore into sidecar_trigger (name) values (?)", (name,))
        return conn.execute(
            "select owner, lease_until, cursor, status, enqueued from sidecar_trigger"
            " where name = ?",
            (name,),
        ).fetchone()

    def acquire(self, name: str, owner: str, ttl: float, is_dead: DeadOwner) -> bool:
        now = time.time()
        with self._transaction() as conn:
            holder, until, *_ = self._row(conn, name)
            free = holder is None or (until or 0) <= now or holder == owner or is_dead(holder)
            if free:
                conn.execute(
                    "update sidecar_trigger set owner = ?, lease_until = ? where name = ?",
                    (owner, now + ttl, name),
                )
            return free

    def renew(self, name: str, owner: str, ttl: float) -> bool:
        """Extend ``owner``'s unexpired lease; False once it lapsed or changed hands."""
        now = time.time()
        with self._transaction() as conn:
            renewed = conn.execute(
                "update sidecar_trigger set lease_until = ?"
                " where name = ? and owner = ? and lease_until > ?",
                (now + ttl, name, owner, now),
            )
            return renewed.rowcount == 1

    def release(self, name: str, owner: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "update sidecar_trigger set owner = null, lease_until = null"
                " where name = ? and owner = ?",
                (name, owner),
            )

    def holder(self, name: str) -> str | None:
        row = (
            self._conn()
            .execute("select owner, lease_until from sidecar_trigger where name = ?", (name,))
            .fetchone()
        )
        return row[0] if row and row[0] and (row[1] or 0) > time.time() else None

    def cursor(self, name: str) -> str | None:
        row = (
            self._conn()
            .execute("select cursor from sidecar_trigger where name = ?", (name,))
            .fetchone()
        )
        return row[0] if row else None

    def set_cursor(self, name: str, value: str, owner: str | None = None) -> bool:
        """Set the cursor; with ``owner``, only while that owner holds an unexpired lease."""
        with self._transaction() as conn:
            self._row(conn, name)
            if owner is None:
                conn.execute("update sidecar_trigger set cursor = ? where name = ?", (value, name))
                return True
            moved = conn.execute(
                "update sidecar_trigger set cursor = ?"
                " where name = ? and owner = ? and lease_until > ?",
                (value, name, owner, time.time()),
            )
            return moved.rowcount == 1

    def update_status(self, name: str, changes: dict[str, Any], enqueued: int = 0) -> None:
        with self._transaction() as conn:
            _, _, _, status, _ = self._row(conn, name)
            merged = {**json.loads(status or "{}"), **changes}
            conn.execute(
                "update sidecar_trigger set status = ?, enqueued = enqueued + ? where name = ?",
                (json.dumps(merged), enqueued, name),
            )

    def statuses(self) -> dict[str, dict[str, Any]]:
        now = time.time()
        rows = self._conn().execute(
            "select name, owner, lease_until, cursor, status, enqueued from sidecar_trigger"
            " order by name"
        )
        return {
            name: {
                **json.loads(status or "{}"),
                "cursor": cursor,
                "holder": owner if owner and (until or 0) > now else None,
                "enqueued": enqueued,
            }
            for name, owner, until, cursor, status, enqueued in rows
        }


# Compare-and-renew: extend the lease only while we hold it.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
# Compare-and-set: move the cursor only while we hold the lease.
_MOVE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('hset', KEYS[2], 'cursor', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class RedisTriggerStore:
    """``<prefix>:trigger:<name>`` hashes (cursor, status, enqueued) and lease keys with a
    TTL (``SET NX PX``), on the queue's Redis."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._move = client.register_script(_MOVE)

    def _lease(self, name: str) -> str:
        return f"{self.prefix}:lease:{name}"

    def _hash(self, name: str) -> str:
        return f"{self.prefix}:trigger:{name}"

    def acquire(self, name: str, owner: str, ttl: float, is_dead: DeadOwner) -> bool:
        key, ms = self._lease(name), int(ttl * 1000)
        self.redis.sadd(f"{self.prefix}:triggers", name)
        if self.redis.set(key, owner, nx=True, px=ms):
            return True
        if self._renew(keys=[key], args=[owner, ms]):
            return True
        holder = _text(self.redis.get(key))
        if holder and is_dead(holder) and self._release(keys=[key], args=[holder]):
            return bool(self.redis.set(key, owner, nx=True, px=ms))
        return False

    def renew(self, name: str, owner: str, ttl: float) -> bool:
        """Extend ``owner``'s lease key; False once it expired or changed hands."""
        return bool(self._renew(keys=[self._lease(name)], args=[owner, int(ttl * 1000)]))

    def release(self, name: str, owner: str) -> None:
        self._release(keys=[self._lease(name)], args=[owner])

    def holder(self, name: str) -> str | None:
        return _text(self.redis.get(self._lease(name)))

    def cursor(self, name: str) -> str | None:
        return _text(self.redis.hget(self._hash(name), "cursor"))

    def set_cursor(self, name: str, value: str, owner: str | None = None) -> bool:
        """Set the cursor; with ``owner``, only while that owner holds the lease key."""
        self.redis.sadd(f"{self.prefix}:triggers", name)
        if owner is None:
            self.redis.hset(self._hash(name), "cursor", value)
            return True
        keys = [self._lease(name), self._hash(name)]
        return bool(self._move(keys=keys, args=[owner, value]))

    def update_status(self, name: str, changes: dict[str, Any], enqueued: int = 0) -> None:
        key = self._hash(name)
        self.redis.sadd(f"{self.prefix}:triggers", name)
        with self.redis.pipeline() as pipe:
            if changes:
                pipe.hset(key, mapping={k: json.dumps(v) for k, v in changes.items()})
            if enqueued:
                pipe.hincrby(key, "enqueued", enqueued)
            pipe.execute()

    def statuses(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for raw in sorted(self.redis.smembers(f"{self.prefix}:triggers")):
            name = _text(raw) or ""
            fields = {_text(k): _text(v) for k, v in self.redis.hgetall(self._hash(name)).items()}
            status: dict[str, Any] = {}
            for key, value in fields.items():
                if key in ("cursor", "enqueued") or key is None:
                    continue
                status[key] = json.loads(value) if value is not None else None
            status["cursor"] = fields.get("cursor")
            status["enqueued"] = int(fields.get("enqueued") or 0)
            status["holder"] = self.holder(name)
            out[name] = status
        return out

    def close(self) -> None:
        """The Redis connection belongs to the queue."""


class LeaseLost(RuntimeError):
    """Another process holds the trigger's lease now; this step's work is not recorded."""


class Lease:
    """One trigger's lease as its holder sees it: read the cursor, move it while held."""

    def __init__(self, store: TriggerStore, name: str, owner: str) -> None:
        self.store = store
        self.name = name
        self.owner = owner

    def cursor(self) -> str | None:
        return self.store.cursor(self.name)

    def move(self, value: str) -> None:
        """Advance the cursor, or raise :class:`LeaseLost` when the lease is gone."""
        if not self.store.set_cursor(self.name, value, self.owner):
            raise LeaseLost(f"{self.name}: lease lost, cursor not moved")


def _text(value: bytes | str | None) -> str | None:
    return value.decode("utf-8") if isinstance(value, bytes) else value
