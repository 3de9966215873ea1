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
from contextlib import contextmanager
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


def start_redis_server(folder: Path, preferred_port: int = 6390) -> tuple[subprocess.Popen, str]:
    """A throw-away redis-server on loopback (no persistence), answering PING; returns the
    process and its ``redis://127.0.0.1:<port>/0`` URL."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise RuntimeError("redis-server is not installed (Debian package redis-server)")
    port = free_port(preferred_port)
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
    except BaseException:
        proc.terminate()
        raise
    finally:
        client.close()
    return proc, f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[str]:
    """``redis://127.0.0.1:<port>/0`` of a redis-server started for this session."""
    proc, url = start_redis_server(tmp_path_factory.mktemp("redis"))
    try:
        yield url
    finally:
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
                "sidecar.entry.gunicorn_worker.FhirThreadWorker",
                "--threads",
                "16",
                "-w",
                "2",
                "-b",
                f"127.0.0.1:{self.port}",
                "sidecar.wiring:create_web_app()",
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
        proc = self._spawn("worker", ["-m", "sidecar", "worker"])
        self.env_threads = threads
        return proc

    def workers(self) -> list[Proc]:
        return [p for p in self.procs if p.name == "worker" and p.popen.poll() is None]

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"== {p.log.name}\n{p.log.read_text()[-4000:]}" for p in self.procs)


def sync_environment(
    stack, tmp_path: Path, *, redis_url: str | None = None, port: int | None = None, **extra: str
):
    """The environment for sidecar and workers: the stack's settings + a fresh queue.

    Tests of one module share ``port`` (and so one Subscription): HAPI keeps retrying
    deliveries to a deleted Subscription's endpoint until its scheduled reload (~1 min), so
    a Subscription per test would pile up retries against stopped sidecars and slow HAPI.
    """
    from tests.integration.conftest import identifier_mappings

    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env.update(stack.env())
    env.update(
        {
            "SIDECAR_PATIENT_IDENTIFIERS": identifier_mappings(),
            "SIDECAR_RELAY_SECRET": stack.relay_secret,
            "SIDECAR_NOTIFY_SECRET": stack.notify_secret,
            "SIDECAR_PACS_TIMEOUT_SECONDS": "5",
            "SIDECAR_PACS_CONNECT_TIMEOUT_SECONDS": "1",
            "SIDECAR_DATA_DIR": str(tmp_path / "data"),
            "SIDECAR_QUEUE_PATH": str(tmp_path / "data" / "queue.sqlite3"),
            "SIDECAR_QUEUE_NAME": f"sync-test-{tmp_path.name}",
            "SIDECAR_NOTIFY_URL": f"http://127.0.0.1:{port}/notify",
            "SIDECAR_SUBSCRIPTION_ID": f"dicom-fhir-sidecar-test-{port}",
            "SIDECAR_SUBSCRIPTION_ACTIVATION_TIMEOUT_SECONDS": "120",
            "SIDECAR_SYNC_RETRY_DELAY_SECONDS": "1",
            "SIDECAR_SYNC_RETRY_BACKOFF": "1.5",
            "SIDECAR_SYNC_RETRY_MAX_DELAY_SECONDS": "5",
            "SIDECAR_SYNC_MAX_ATTEMPTS": "30",
            "SIDECAR_SYNC_RECONCILE_SECONDS": "2",
            "SIDECAR_SYNC_LEASE_SECONDS": "15",
            "SIDECAR_QUEUE_POLL_MAX_SECONDS": "0.2",
            "SIDECAR_WORKER_THREADS": "2",
            # the Subscription's path alone unless a test turns the other triggers on
            "SIDECAR_TRIGGERS": "false",
            "PYTHONPATH": str(ROOT),
        }
    )
    if redis_url:
        env["SIDECAR_REDIS_URL"] = redis_url
    env.update(extra)
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    return env, port


def module_notify_port(stack) -> Iterator[int]:
    """One notify port, hence one Subscription, for every test of a module. Between tests
    (sidecar stopped) and after the module an AckServer answers on it, so HAPI never queues
    retries for a dead endpoint (e.g. the DELETEs of the next test's FHIR reset)."""
    from sidecar.settings import load_settings
    from sidecar.wiring import build_registrar

    port = free_port()
    keep_alive(port)
    yield port
    env, _ = sync_environment(stack, Path("/tmp"), port=port)
    delete_subscription(build_registrar(load_settings(env)))


@contextmanager
def running_sync_stack(
    stack, tmp_path: Path, port: int, redis_url: str | None = None, **extra: str
) -> Iterator[SyncStack]:
    """Web (2 gunicorn workers) on ``port`` and the Subscription, active; workers are started
    by the test; everything stopped (and an AckServer back on the port) afterwards."""
    from sidecar.settings import load_settings
    from sidecar.wiring import build_registrar

    env, port = sync_environment(stack, tmp_path, redis_url=redis_url, port=port, **extra)
    log_dir = tmp_path / "logs"
    log_dir.mkdir(exist_ok=True)
    running = SyncStack(env, port, log_dir)
    release_port(port)
    running.start_web()
    result = build_registrar(load_settings(env)).register_all(wait=True)
    assert result["subscription"]["status"] == "active", result
    try:
        yield running
    finally:
        running.stop_all()
        keep_alive(port)
        if redis_url:
            queue = read_queue(env)
            queue.huey.flush()
            queue.ledger.clear()
            queue.close()


# -- tiny studies: one small instance per PACS patient, cloned from the sample roster ----------

TINY_ISSUER = "HOSP-A"


def tiny_patient_id(n: int) -> str:
    return f"SYNC-{n:04d}"


def smallest_sample_instance():
    """The smallest instance of the sample roster, to clone one-instance studies from."""
    from sidecar.samples.generator import generate_studies

    best = None
    for _study, instances in generate_studies():
        for ds in instances:
            size = len(getattr(ds, "PixelData", b"") or b"")
            if best is None or size < best[0]:
                best = (size, ds)
    assert best is not None
    return best[1]


def load_tiny_studies(pacs, count: int) -> dict[str, str]:
    """PatientID -> StudyInstanceUID of ``count`` one-instance studies in ``pacs`` (idempotent)."""
    import copy

    from pydicom.uid import generate_uid

    from sidecar.samples.loader import load_into_orthanc

    base = smallest_sample_instance()
    datasets, uids = [], {}
    for n in range(1, count + 1):
        patient_id = tiny_patient_id(n)
        ds = copy.deepcopy(base)
        ds.PatientID = patient_id
        ds.IssuerOfPatientID = TINY_ISSUER
        ds.PatientName = f"Sync^Test{n}"
        ds.StudyInstanceUID = generate_uid(entropy_srcs=["sync-study", patient_id])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=["sync-series", patient_id])
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["sync-sop", patient_id])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.AccessionNumber = f"SA{n:05d}"
        datasets.append(ds)
        uids[patient_id] = ds.StudyInstanceUID
    report = load_into_orthanc(datasets, base_url=pacs.base_url, auth=pacs.auth, workers=4)
    assert not report.failed, report
    return uids


# -- reading what happened -------------------------------------------------------------------


def read_queue(env: dict[str, str]):
    """A HueySyncQueue on the same storage as the processes under test (read-mostly)."""
    from sidecar.settings import load_settings
    from subscription_handlers.adapters.queue import HueySyncQueue

    return HueySyncQueue(load_settings(env).sync, runner=lambda *job: None)


def sync_intervals(logs: list[Path]) -> dict[str, list[tuple[float, float, str]]]:
    """Per patient, the (start, end, lease) of every sync run found in the JSON logs."""
    import json
    from datetime import datetime

    starts: dict[str, tuple[float, str]] = {}
    runs: dict[str, list[tuple[float, float, str]]] = {}
    for path in logs:
        for line in path.read_text().splitlines():
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            lease = entry.get("lease")
            if not lease or entry.get("logger") != "subscription_handlers.adapters.queue":
                continue
            ts = datetime.fromisoformat(entry["ts"]).timestamp()
            if entry["msg"] == "sync start":
                starts[lease] = (ts, entry["patient_id"])
            elif lease in starts:
                begun, patient_id = starts.pop(lease)
                runs.setdefault(patient_id, []).append((begun, ts, lease))
    for lease, (begun, patient_id) in starts.items():  # cut short by kill -9
        runs.setdefault(patient_id, []).append((begun, float("inf"), lease))
    return runs


def overlapping(runs: dict[str, list[tuple[float, float, str]]]) -> list[str]:
    """Patients with two runs at once (a killed run counts until its lease was taken)."""
    bad = []
    for patient_id, items in runs.items():
        items = sorted(items)
        for (_s1, e1, _), (s2, _e2, _) in zip(items, items[1:], strict=False):
            if s2 < e1 and e1 != float("inf"):
                bad.append(patient_id)
    return bad


def notifications_logged(logs: list[Path], patient_ids: set[str]) -> int:
    """How many notifications for these patients the sidecar's web processes answered."""
    import json

    count = 0
    for path in logs:
        for line in path.read_text().splitlines():
            if '"msg": "notification"' not in line:
                continue
            entry = json.loads(line)
            if entry.get("patient_id") in patient_ids and entry.get("reason") == "update":
                count += 1
    return count


class AckServer:
    """A loopback HTTP server answering 200 to anything: a live endpoint for Subscriptions
    whose deliveries a test does not care about. A dead endpoint makes HAPI retry each
    delivery for minutes, and a full delivery queue stalls HAPI's matching for everyone, so
    a test Subscription's endpoint must answer until the session ends (see `keep_alive`)."""

    def __init__(self, port: int = 0) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Ack(BaseHTTPRequestHandler):
            def _ok(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_POST = do_DELETE = do_GET = _ok

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Ack)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


#: AckServers kept until the test session ends (daemon threads die with it)
_KEPT: list[AckServer] = []


def keep_alive(port: int) -> AckServer:
    """Answer 200 on ``port`` for the rest of the session: HAPI keeps delivering to a
    deleted Subscription until its registry reloads, and to a stopped sidecar's port."""
    server = AckServer(port)
    _KEPT.append(server)
    return server


def release_port(port: int) -> None:
    """Stop the AckServer on ``port`` so that a sidecar can bind it."""
    for server in [k for k in _KEPT if k.port == port]:
        server.close()
        _KEPT.remove(server)


def delete_subscription(registrar) -> None:
    """Delete our test Subscription for good: HAPI's asynchronous activation can re-save a
    Subscription deleted right after it was created, so check and delete again."""
    sub_id = registrar.settings.subscription_id
    for _ in range(5):
        registrar.fhir.delete("Subscription", sub_id)
        time.sleep(1.0)
        if registrar.fhir.read("Subscription", sub_id) is None:
            return
