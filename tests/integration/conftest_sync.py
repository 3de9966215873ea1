"""Fixtures of the automatic-sync tests (import them into the test module).

- ``redis_server``: a real redis-server on a spare loopback port, no persistence files.
- ``sync_env``: the environment of a sidecar + worker pointed at the local stack.
- ``SyncStack``: a gunicorn sidecar serving /notify and N worker processes, started and
  killed by the tests (kill -9 included), with the Subscription registered on HAPI.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port(preferred: int | None = None) -> int:
    if preferred:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], object], timeout: float, interval: float = 0.2, what=""):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[str]:
    """``redis://127.0.0.1:<port>/0`` of a redis-server started for this session."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail("redis-server is not installed (Debian package redis-server)")
    port = free_port(6390)
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            executable,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    try:
        wait_until(lambda: _ping(client), 10, what="redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


def _ping(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001
        return False


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def kill9(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 30) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


@dataclass
class SyncStack:
    """A sidecar (gunicorn, /notify) and workers, sharing one queue; all stopped at the end."""

    env: dict[str, str]
    port: int
    log_dir: Path
    procs: list[Proc] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, name: str, args: list[str]) -> Proc:
        log = self.log_dir / f"{name}-{len(self.procs)}.log"
        with open(log, "w") as out:
            popen = subprocess.Popen(
                [sys.executable, *args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_web(self) -> Proc:
        proc = self._spawn(
            "web",
            [
                "-m",
                "gunicorn",
                "-k",
                "gthread",
                "--threads",
                "16",
                "-w",
                "2",
                "-b",
                f"127.0.0.1:{self.port}",
                "sidecar.web:create_app()",
            ],
        )

        def up():
            if proc.popen.poll() is not None:
                raise AssertionError(proc.log.read_text()[-3000:])
            try:
                return requests.get(f"{self.url}/livez", timeout=2).ok
            except requests.RequestException:
                return False

        wait_until(up, 60, what="sidecar web")
        return proc

    def start_worker(self, threads: int = 2) -> Proc:
        proc = self._spawn("worker", ["-m", "subscription_handlers.worker"])
        self.env_threads = threads
        return proc

    def workers(self) -> list[Proc]:
        return [p for p in self.procs if p.name == "worker" and p.popen.poll() is None]

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"== {p.log.name}\n{p.log.read_text()[-4000:]}" for p in self.procs)


def sync_environment(stack, tmp_path: Path, *, redis_url: str | None = None, **extra: str):
    """The environment for sidecar and workers: the stack's settings + a fresh queue."""
    from tests.integration.conftest import identifier_mappings

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env.update(stack.env())
    env.update(
        {
            "SIDECAR_PATIENT_IDENTIFIERS": identifier_mappings(),
            "SIDECAR_SHARED_SECRET": stack.shared_secret,
            "SIDECAR_PACS_TIMEOUT_SECONDS": "5",
            "SIDECAR_PACS_CONNECT_TIMEOUT_SECONDS": "1",
            "SIDECAR_DATA_DIR": str(tmp_path / "data"),
            "SIDECAR_QUEUE_PATH": str(tmp_path / "data" / "queue.sqlite3"),
            "SIDECAR_QUEUE_NAME": f"sync-test-{port}",
            "SIDECAR_NOTIFY_URL": f"http://127.0.0.1:{port}/notify",
            "SIDECAR_SUBSCRIPTION_ID": "dicom-fhir-sidecar-test",
            "SIDECAR_SYNC_RETRY_DELAY_SECONDS": "1",
            "SIDECAR_SYNC_RETRY_BACKOFF": "1.5",
            "SIDECAR_SYNC_RETRY_MAX_DELAY_SECONDS": "5",
            "SIDECAR_SYNC_MAX_ATTEMPTS": "30",
            "SIDECAR_SYNC_RECONCILE_SECONDS": "2",
            "SIDECAR_SYNC_LEASE_SECONDS": "15",
            "SIDECAR_QUEUE_POLL_MAX_SECONDS": "0.2",
            "SIDECAR_WORKER_THREADS": "2",
            "PYTHONPATH": str(ROOT),
        }
    )
    if redis_url:
        env["SIDECAR_REDIS_URL"] = redis_url
    env.update(extra)
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    return env, port
