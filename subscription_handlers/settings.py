"""Settings of the automatic sync (queue, retries, Subscription), from ``SIDECAR_*`` variables.

They live beside the sidecar's own ``Settings`` (same environment, same names' style) so the
queue can be configured without touching the use case's settings. Secrets come from the
environment only. See docs/sync.md for the table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sidecar.settings import SettingsReader

DEFAULT_NOTIFY_URL = "http://127.0.0.1:8090/notify"
DEFAULT_SUBSCRIPTION_ID = "dicom-fhir-sidecar-patient"


@dataclass(frozen=True)
class SyncSettings:
    """Everything the notification endpoint, the queue and the workers need."""

    fhir_base_url: str = "http://127.0.0.1:8080/fhir"
    shared_secret: str | None = field(default=None, repr=False)
    notify_url: str = DEFAULT_NOTIFY_URL
    # queue backend: Redis when a URL is set, else a SQLite file (no extra server)
    redis_url: str | None = field(default=None, repr=False)  # may carry a password
    queue_path: Path = Path("var/sidecar/queue.sqlite3")
    queue_name: str = "dicom-fhir-sync"
    # retries of a sync through PACS/FHIR outages: delay * backoff**n, capped
    max_attempts: int = 10
    retry_delay_seconds: float = 5.0
    retry_backoff: float = 2.0
    retry_max_delay_seconds: float = 300.0
    # workers
    worker_threads: int = 2
    lease_seconds: float = 60.0  # renewed every lease/3 while a sync runs
    reconcile_seconds: float = 15.0  # how often a worker re-queues lost or stale work
    stale_queued_seconds: float = 120.0  # a queued job not started by then is re-queued
    poll_max_seconds: float = 0.5  # SQLite backend: longest wait between queue polls
    # registration of the Subscription and the OperationDefinition
    subscription_id: str = DEFAULT_SUBSCRIPTION_ID
    register_on_start: bool = True
    registration_check_seconds: float = 60.0
    activation_timeout_seconds: float = 30.0
    fhir_timeout_seconds: float = 10.0

    @property
    def backend(self) -> str:
        return "redis" if self.redis_url else "sqlite"

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        delay = self.retry_delay_seconds * self.retry_backoff ** max(attempt - 1, 0)
        return min(delay, self.retry_max_delay_seconds)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SyncSettings:
        env = os.environ if environ is None else environ
        get = SettingsReader(env)
        data_dir = Path(get.str("DATA_DIR", "var/sidecar"))
        return cls(
            fhir_base_url=get.str("FHIR_BASE_URL", cls.fhir_base_url).rstrip("/"),
            shared_secret=env.get("SIDECAR_SHARED_SECRET") or None,
            notify_url=get.str("NOTIFY_URL", DEFAULT_NOTIFY_URL).rstrip("/"),
            redis_url=env.get("SIDECAR_REDIS_URL") or None,
            queue_path=Path(get.str("QUEUE_PATH", str(data_dir / "queue.sqlite3"))),
            queue_name=get.str("QUEUE_NAME", cls.queue_name),
            max_attempts=get.int("SYNC_MAX_ATTEMPTS", cls.max_attempts, minimum=1),
            retry_delay_seconds=get.float("SYNC_RETRY_DELAY_SECONDS", cls.retry_delay_seconds),
            retry_backoff=get.float("SYNC_RETRY_BACKOFF", cls.retry_backoff, minimum=1.0),
            retry_max_delay_seconds=get.float(
                "SYNC_RETRY_MAX_DELAY_SECONDS", cls.retry_max_delay_seconds
            ),
            worker_threads=get.int("WORKER_THREADS", cls.worker_threads, minimum=1),
            lease_seconds=get.float("SYNC_LEASE_SECONDS", cls.lease_seconds, minimum=3.0),
            reconcile_seconds=get.float("SYNC_RECONCILE_SECONDS", cls.reconcile_seconds),
            stale_queued_seconds=get.float("SYNC_STALE_QUEUED_SECONDS", cls.stale_queued_seconds),
            poll_max_seconds=get.float("QUEUE_POLL_MAX_SECONDS", cls.poll_max_seconds),
            subscription_id=get.str("SUBSCRIPTION_ID", cls.subscription_id),
            register_on_start=get.bool("REGISTER_ON_START", cls.register_on_start),
            registration_check_seconds=get.float(
                "REGISTRATION_CHECK_SECONDS", cls.registration_check_seconds
            ),
            activation_timeout_seconds=get.float(
                "SUBSCRIPTION_ACTIVATION_TIMEOUT_SECONDS", cls.activation_timeout_seconds
            ),
            fhir_timeout_seconds=get.float("FHIR_TIMEOUT_SECONDS", cls.fhir_timeout_seconds),
        )
