"""``dicom-fhir serve``: gunicorn with the app factory, plus (by default) an embedded worker.

    serve(settings, bind="127.0.0.1:8090", workers=2, embedded_worker=True)

- gunicorn runs ``create_app(settings)`` in ``workers`` processes (gthread).
- With ``embedded_worker`` the sync worker runs as a child process
  (``python -m subscription_handlers.worker``), restarted if it dies; the SQLite queue file
  needs no other server. Without it, run ``dicom-fhir worker`` elsewhere (Redis backend).
- The Subscription and OperationDefinition are registered by a background thread (start-up
  never waits for a slow FHIR server), which then re-registers them when they go missing.
- SIGTERM (or SIGINT) stops gunicorn gracefully, then the worker child (it finishes its
  running syncs, bounded by its own shutdown timeout).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from typing import Any

from gunicorn.app.base import BaseApplication

log = logging.getLogger("sidecar.server")

WORKER_STOP_SECONDS = 70.0  # the worker's own SIGTERM grace is 60 s


class EmbeddedWorker:
    """The sync worker as a supervised child process."""

    def __init__(self, command: list[str] | None = None) -> None:
        self.command = command or [sys.executable, "-m", "subscription_handlers.worker"]
        self.process: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(
            target=self._supervise, name="worker-supervisor", daemon=True
        )
        self._thread.start()

    def _spawn(self) -> None:
        self.process = subprocess.Popen(self.command, start_new_session=False)
        log.info("embedded sync worker started", extra={"pid": self.process.pid})

    def _supervise(self) -> None:
        delay = 1.0
        while not self._stopping.is_set():
            process = self.process
            if process is not None and process.poll() is not None and not self._stopping.is_set():
                log.error(
                    "embedded sync worker exited; restarting",
                    extra={"returncode": process.returncode, "delay": delay},
                )
                if self._stopping.wait(delay):
                    break
                self._spawn()
                delay = min(delay * 2, 30.0)
            elif process is not None and process.poll() is None:
                delay = 1.0
            self._stopping.wait(1.0)

    def stop(self, timeout: float = WORKER_STOP_SECONDS) -> None:
        self._stopping.set()
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("embedded sync worker did not stop; killing", extra={"pid": process.pid})
            process.kill()
            process.wait()


class SidecarApplication(BaseApplication):
    """gunicorn, configured in code, serving ``create_app(settings)``."""

    def __init__(self, settings: Any, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self):
        from sidecar.web import create_app

        return create_app(self.settings)


def serve(
    settings: Any = None,
    bind: str = "127.0.0.1:8090",
    workers: int = 2,
    embedded_worker: bool = True,
    *,
    threads: int = 8,
    register: bool | None = None,
) -> None:
    """Run the sidecar until SIGTERM/SIGINT (blocks; call from the main thread)."""
    from sidecar.settings import Settings
    from subscription_handlers.settings import SyncSettings

    settings = settings or Settings.from_env()
    sync_settings = SyncSettings.from_env()
    host = bind.rpartition(":")[0]
    if "SIDECAR_NOTIFY_URL" not in os.environ and host not in ("", "0.0.0.0", "[::]"):
        # HAPI reaches this sidecar where it listens, unless told otherwise
        sync_settings = replace(sync_settings, notify_url=f"http://{bind}/notify")
    do_register = sync_settings.register_on_start if register is None else register
    worker = EmbeddedWorker() if embedded_worker else None
    registration: dict[str, Any] = {}

    def when_ready(server) -> None:
        if worker is not None:
            worker.start()
        if do_register:
            from subscription_handlers.registration import start_registration_thread

            registration["thread"], registration["stop"] = start_registration_thread(sync_settings)

    def on_exit(server) -> None:
        if "stop" in registration:
            registration["stop"].set()
        if worker is not None:
            worker.stop()

    options = {
        "bind": bind,
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        # $fetch-imaging on a big patient may take a minute: don't kill the worker earlier
        "timeout": 120,
        "graceful_timeout": 30,
        "keepalive": 5,
        "accesslog": None,
        "when_ready": when_ready,
        "on_exit": on_exit,
        "proc_name": "dicom-fhir-sidecar",
    }
    SidecarApplication(settings, options).run()
