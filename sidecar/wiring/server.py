"""``dicom-fhir serve``: gunicorn with the app factory, plus (by default) an embedded worker.

    serve(settings, bind="127.0.0.1:8090", workers=2, embedded_worker=True)

- gunicorn runs ``create_app(settings)`` in ``workers`` processes (gthread).
- With ``embedded_worker`` the sync worker runs as a child process (``dicom-fhir worker``),
  restarted if it dies; the SQLite queue file needs no other server. Without it, run
  ``dicom-fhir worker`` elsewhere (Redis backend).
- Every process records metrics into one folder (``<SIDECAR_DATA_DIR>/metrics``), so
  ``/metrics`` on any gunicorn worker shows the embedded worker's sync jobs too.
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
from typing import Any

from gunicorn.app.base import BaseApplication

from sidecar.settings import Settings, SettingsError, load_settings

log = logging.getLogger(__name__)

WORKER_STOP_SECONDS = 70.0  # the worker's own SIGTERM grace is 60 s


class EmbeddedWorker:
    """The sync worker as a supervised child process."""

    def __init__(self, command: list[str] | None = None) -> None:
        self.command = command or [sys.executable, "-m", "sidecar", "worker"]
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
        # the worker stops by itself when this process dies without stopping it (SIGKILL)
        command = [*self.command, "--exit-with-parent", str(os.getpid())]
        self.process = subprocess.Popen(command, start_new_session=False)
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

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self):
        from sidecar.wiring import create_web_app  # in each worker, after fork

        return create_web_app(self.settings)


def with_notify_url_of(settings: Settings, bind: str) -> Settings:
    """HAPI reaches this sidecar where it listens, unless SIDECAR_NOTIFY_URL says otherwise.

    A wildcard address (``0.0.0.0:9000``) names no host HAPI could call: the notify URL is
    then this host's loopback at the bound port (a HAPI on the same machine). A HAPI on
    another machine needs ``SIDECAR_NOTIFY_URL``. (Before, a wildcard kept the default
    ``http://127.0.0.1:8090/notify`` whatever the port.)"""
    if "notify_url" in settings.sync.model_fields_set:
        return settings
    host, _, port = bind.rpartition(":")
    if host in ("", "0.0.0.0", "[::]"):
        host = "127.0.0.1"
    url = f"http://{host}:{port}/notify"
    sync = settings.sync.model_copy(update={"notify_url": url})
    return settings.model_copy(update={"sync": sync})


def serve(
    settings: Settings | None = None,
    bind: str = "127.0.0.1:8090",
    workers: int = 2,
    embedded_worker: bool = True,
    *,
    threads: int = 8,
    register: bool | None = None,
) -> None:
    """Run the sidecar until SIGTERM/SIGINT (blocks; call from the main thread)."""
    settings = with_notify_url_of(settings or load_settings(), bind)
    from sidecar.entry import metrics  # before anything that records a metric is imported

    metrics.share_between_processes(settings.data_dir / "metrics")
    from sidecar import wiring

    wiring.require_caller_credentials(settings)
    do_register = settings.sync.register_on_start if register is None else register
    registrar = wiring.build_registrar(settings) if do_register else None
    if registrar is not None and not registrar.notify_secret:
        raise SettingsError(
            "SIDECAR_NOTIFY_SECRET is required for the automatic sync's Subscription "
            "(or start with --no-register / SIDECAR_REGISTER_ON_START=false)"
        )
    worker = EmbeddedWorker() if embedded_worker else None
    registration: dict[str, Any] = {}

    def when_ready(server) -> None:
        if worker is not None:
            worker.start()
        if registrar is not None:
            from subscription_handlers.usecases.registration import start_registration_thread

            registration["thread"], registration["stop"] = start_registration_thread(registrar)

    def on_exit(server) -> None:
        if "stop" in registration:
            registration["stop"].set()
        if worker is not None:
            worker.stop()

    def child_exit(server, gunicorn_worker) -> None:
        metrics.process_exited(gunicorn_worker.pid)

    options = {
        "bind": bind,
        "workers": workers,
        "worker_class": "sidecar.entry.gunicorn_worker.FhirThreadWorker",
        "threads": threads,
        # $fetch-imaging on a big patient may take a minute: don't kill the worker earlier
        "timeout": 120,
        "graceful_timeout": 30,
        "keepalive": 5,
        "accesslog": None,
        # gunicorn's own messages as our JSON lines, redacted like ours (a request line
        # carries its query string: an identifier search)
        "logconfig_dict": {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"json": {"()": "sidecar.entry.logs.JsonFormatter"}},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
            "root": {"handlers": ["stderr"], "level": "INFO"},
            "loggers": {
                "gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
                "gunicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            },
        },
        "when_ready": when_ready,
        "on_exit": on_exit,
        "child_exit": child_exit,
        "proc_name": "dicom-fhir-sidecar",
        # gunicorn 25.1+ has a control socket at one path per user: two sidecars on a host
        # would take it from each other; nothing of ours uses it
        "control_socket_disable": True,
    }
    SidecarApplication(settings, options).run()
