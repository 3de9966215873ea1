"""The backfill's checkpoint: one JSON file per PACS and parameters, replaced atomically.

Completed windows (with their instance counts) and, per open window, completed patients; a
rerun with the same parameters skips what is recorded, one with other parameters (or
``--restart``) starts afresh. Implements :class:`sidecar.ports.BackfillCheckpoint`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
CHECKPOINT_VERSION = 1


class Checkpoint:
    """Completed windows (with their instance counts) and, per open window, completed
    patients; one JSON file per PACS and parameters, replaced atomically on every save."""

    def __init__(self, path: Path, params: dict[str, Any]) -> None:
        self.path = path
        self.params = params
        self.windows: dict[str, int] = {}  # label -> instances
        self.patients: dict[str, dict[str, int]] = {}  # label -> patient key -> instances
        self._lock = threading.Lock()

    @staticmethod
    def path_for(data_dir: Path, pacs: str, params: dict[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
        return data_dir / "backfill" / f"{pacs}-{digest}.json"

    @classmethod
    def load(cls, path: Path, params: dict[str, Any], *, restart: bool = False) -> Checkpoint:
        checkpoint = cls(path, params)
        if restart or not path.exists():
            return checkpoint
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log.warning(
                "unreadable checkpoint ignored", extra={"path": str(path), "error": str(exc)}
            )
            return checkpoint
        if data.get("version") != CHECKPOINT_VERSION or data.get("params") != params:
            log.warning("checkpoint of other parameters ignored", extra={"path": str(path)})
            return checkpoint
        checkpoint.windows = {str(k): int(v) for k, v in data.get("windows", {}).items()}
        checkpoint.patients = {
            str(w): {str(k): int(v) for k, v in done.items()}
            for w, done in data.get("patients", {}).items()
        }
        return checkpoint

    def window_done(self, label: str) -> bool:
        return label in self.windows

    def patient_done(self, label: str, key: str) -> bool:
        return key in self.patients.get(label, {})

    @property
    def instances_done(self) -> int:
        return sum(self.windows.values()) + sum(
            sum(done.values()) for done in self.patients.values()
        )

    def mark_patient(self, label: str, key: str, instances: int) -> None:
        with self._lock:
            self.patients.setdefault(label, {})[key] = instances
            self._save()

    def mark_window(self, label: str, instances: int) -> None:
        with self._lock:
            self.windows[label] = instances
            self.patients.pop(label, None)
            self._save()

    def _save(self) -> None:
        data = {
            "version": CHECKPOINT_VERSION,
            "params": self.params,
            "windows": self.windows,
            "patients": self.patients,
            "saved_at": time.time(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(data, out, indent=1, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)  # atomic: a kill leaves the old or the new file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
