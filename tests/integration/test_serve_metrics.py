"""``dicom-fhir serve``: one /metrics over every process, and start-up validation.

``serve`` runs gunicorn workers and an embedded sync worker as separate processes; what the
sync worker records must reach ``/metrics`` whichever gunicorn worker answers the scrape.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.integration.conftest_sync import ROOT, SyncStack, free_port, sync_environment, wait_until


def test_the_sync_workers_jobs_reach_metrics_on_every_web_worker(stack, tmp_path):
    port = free_port()
    env, _ = sync_environment(stack, tmp_path, port=port)
    env["SIDECAR_REGISTER_ON_START"] = "false"  # no Subscription: the job is queued by hand
    running = SyncStack(env, port, tmp_path)
    serve = running._spawn(
        "serve",
        ["-m", "sidecar", "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
    )
    try:
        wait_until(lambda: _answers(f"{running.url}/livez"), 60, what="serve")
        # a job for a Patient the FHIR server does not have: the run counts as "missing" (a 404
        # is no deletion, and leaves no ledger record)
        queued = subprocess.run(
            [sys.executable, "-m", "sidecar", "jobs", "sync", "metrics-test-nobody"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert queued.returncode == 0, queued.stderr

        def counted() -> bool:
            body = requests.get(f"{running.url}/metrics", timeout=10).text
            return 'sidecar_sync_jobs_total{result="missing"} 1.0' in body

        wait_until(counted, 60, what="the worker's job in /metrics")
        for _ in range(20):  # several scrapes: both gunicorn workers answer some
            response = requests.get(f"{running.url}/metrics", timeout=10)
            assert 'sidecar_sync_jobs_total{result="missing"} 1.0' in response.text
            time.sleep(0.05)
    finally:
        running.stop_all()
    assert serve.popen.returncode is not None


def run_serve(env: dict[str, str], port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "serve", "--bind", f"127.0.0.1:{port}"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_refuses_to_start_without_a_notify_secret(stack, tmp_path):
    env, port = sync_environment(stack, tmp_path)
    env.pop("SIDECAR_NOTIFY_SECRET")
    done = run_serve(env, port)
    assert done.returncode == 2 and "SIDECAR_NOTIFY_SECRET" in done.stderr


def test_serve_names_a_bad_setting(stack, tmp_path):
    env, port = sync_environment(stack, tmp_path)
    env["SIDECAR_QIDO_CONCURRENCY"] = "many"
    done = run_serve(env, port)
    assert done.returncode == 2 and "SIDECAR_QIDO_CONCURRENCY" in done.stderr


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    found = []
    for task in tasks.iterdir() if tasks.exists() else []:
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _runs(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for its reaper is not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_the_embedded_worker_stops_when_serve_is_killed_9(stack, tmp_path):
    port = free_port()
    env, _ = sync_environment(stack, tmp_path, port=port)
    env["SIDECAR_REGISTER_ON_START"] = "false"
    running = SyncStack(env, port, tmp_path)
    serve = running._spawn(
        "serve",
        ["-m", "sidecar", "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
    )
    worker: int | None = None
    try:
        wait_until(lambda: _answers(f"{running.url}/livez"), 60, what="serve")

        def embedded_worker() -> int | None:
            for child in _children(serve.popen.pid):
                if b"worker" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return child
            return None

        wait_until(lambda: embedded_worker() is not None, 30, what="the embedded worker")
        worker = embedded_worker()
        assert worker is not None
        serve.popen.send_signal(signal.SIGKILL)
        serve.popen.wait(10)
        # no orphan syncing on with the old settings: it stops within a few seconds
        wait_until(lambda: not _runs(worker), 30, what="the orphaned worker to stop")
    finally:
        running.stop_all()
        if worker is not None and _runs(worker):  # the test failed: leave no orphan behind
            os.kill(worker, signal.SIGKILL)
