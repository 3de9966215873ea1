"""Where the per-patient sync records live: a SQLite file or Redis, beside huey's queue.

Both ledgers apply a pure transition from ``state.py`` atomically: SQLite inside
``BEGIN IMMEDIATE`` (one writer at a time across processes), Redis with WATCH/MULTI on the
patient's key (optimistic, retried on contention), so several web processes and workers on
several machines agree on one record per patient.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sidecar.core.sync_state import FORGOTTEN, PatientSyncState
from subscription_handlers.adapters.sqlite_file import SqliteFile

T = TypeVar("T")
Transition = Callable[[PatientSyncState | None], tuple[PatientSyncState | None, T]]

# derived flags kept beside each record so listings need no scan of every patient
_INDEXES: dict[str, Callable[[PatientSyncState], bool]] = {
    "pending": lambda s: s.pending,
    "queued": lambda s: s.queued,
    "leased": lambda s: s.lease is not None,
    "dead": lambda s: s.dead,
    "conflict": lambda s: s.outcome == "conflict" and not s.pending,
}


class Ledger(Protocol):
    def update(self, patient_id: str, transition: Transition[T]) -> T: ...

    def get(self, patient_id: str) -> PatientSyncState | None: ...

    def ids(self, index: str, limit: int | None = None) -> list[str]: ...

    def count(self, index: str) -> int: ...

    def close(self) -> None: ...


class SqliteLedger(SqliteFile):
    """Records in a table of the queue's SQLite file (WAL, synchronous=FULL)."""

    def __init__(self, path: Path | str, *, timeout: float = 30.0) -> None:
        super().__init__(path, timeout=timeout)
        with self._transaction() as conn:
            conn.execute(
                "create table if not exists sidecar_sync ("
                " patient_id text primary key, data text not null, dead_at real)"
            )
            have = {row[1] for row in conn.execute("pragma table_info(sidecar_sync)")}
            for index in _INDEXES:  # a queue file of an older version gains new indexes
                if index not in have:
                    conn.execute(
                        f"alter table sidecar_sync add column {index} integer not null default 0"
                    )
                conn.execute(
                    f"create index if not exists sidecar_sync_{index} on sidecar_sync"
                    f" ({index}) where {index} = 1"
                )

    def update(self, patient_id: str, transition: Transition[T]) -> T:
        with self._transaction() as conn:
            row = conn.execute(
                "select data from sidecar_sync where patient_id = ?", (patient_id,)
            ).fetchone()
            current = PatientSyncState.from_dict(json.loads(row[0])) if row else None
            new, result = transition(current)
            if new is FORGOTTEN:
                conn.execute("delete from sidecar_sync where patient_id = ?", (patient_id,))
            elif new is not None and new != current:
                flags = [int(test(new)) for test in _INDEXES.values()]
                columns = ", ".join(_INDEXES)
                updates = ", ".join(f"{c} = excluded.{c}" for c in ("data", "dead_at", *_INDEXES))
                conn.execute(
                    f"insert into sidecar_sync (patient_id, data, dead_at, {columns}) values"
                    f" ({', '.join('?' * (3 + len(_INDEXES)))})"
                    f" on conflict(patient_id) do update set {updates}",
                    (patient_id, json.dumps(new.to_dict()), new.dead_at, *flags),
                )
            return result

    def get(self, patient_id: str) -> PatientSyncState | None:
        row = (
            self._conn()
            .execute("select data from sidecar_sync where patient_id = ?", (patient_id,))
            .fetchone()
        )
        return PatientSyncState.from_dict(json.loads(row[0])) if row else None

    def ids(self, index: str, limit: int | None = None) -> list[str]:
        _check_index(index)
        order = "dead_at" if index == "dead" else "rowid"
        sql = f"select patient_id from sidecar_sync where {index} = 1 order by {order}"
        params: tuple[Any, ...] = ()
        if limit is not None:
            sql += " limit ?"
            params = (limit,)
        return [r[0] for r in self._conn().execute(sql, params)]

    def count(self, index: str) -> int:
        _check_index(index)
        sql = f"select count(*) from sidecar_sync where {index} = 1"
        return self._conn().execute(sql).fetchone()[0]

    def clear(self) -> None:
        with self._transaction() as conn:
            conn.execute("delete from sidecar_sync")


class RedisLedger:
    """Records as JSON strings under ``<prefix>:state:<id>``, with sets per index."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix

    def _key(self, patient_id: str) -> str:
        return f"{self.prefix}:state:{patient_id}"

    def _index_key(self, index: str) -> str:
        return f"{self.prefix}:index:{index}"

    def update(self, patient_id: str, transition: Transition[T]) -> T:
        from redis.exceptions import WatchError

        key = self._key(patient_id)
        deadline = time.monotonic() + 30
        while True:
            with self.redis.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    current = PatientSyncState.from_dict(json.loads(raw)) if raw else None
                    new, result = transition(current)
                    pipe.multi()
                    if new is FORGOTTEN:
                        pipe.delete(key)
                        for name in _INDEXES:
                            pipe.zrem(self._index_key(name), patient_id)
                    elif new is not None and new != current:
                        pipe.set(key, json.dumps(new.to_dict()))
                        for name, test in _INDEXES.items():
                            index_key = self._index_key(name)
                            if test(new):
                                if name == "dead":
                                    pipe.zadd(index_key, {patient_id: new.dead_at or time.time()})
                                else:
                                    pipe.zadd(index_key, {patient_id: time.time()}, nx=True)
                            else:
                                pipe.zrem(index_key, patient_id)
                    pipe.execute()
                    return result
                except WatchError:
                    if time.monotonic() > deadline:
                        raise
                    continue

    def get(self, patient_id: str) -> PatientSyncState | None:
        raw = self.redis.get(self._key(patient_id))
        return PatientSyncState.from_dict(json.loads(raw)) if raw else None

    def ids(self, index: str, limit: int | None = None) -> list[str]:
        _check_index(index)
        end = -1 if limit is None else limit - 1
        return [_text(m) for m in self.redis.zrange(self._index_key(index), 0, end)]

    def count(self, index: str) -> int:
        _check_index(index)
        return int(self.redis.zcard(self._index_key(index)))

    def clear(self) -> None:
        keys = list(self.redis.scan_iter(f"{self.prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            self.redis.delete(*keys[start : start + 500])

    def close(self) -> None:
        self.redis.close()


def _check_index(index: str) -> None:
    if index not in _INDEXES:
        raise ValueError(f"unknown index {index!r}; one of {', '.join(_INDEXES)}")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
