"""Automatic sync benchmarks, per queue backend (SQLite file, then Redis):

1. notification-to-ImagingStudy latency and patients per minute (``--mode notify``);
2. PACS-store-to-FHIR latency (``--mode pacs``): 20 existing Patients, then a burst of 100
   new studies stored in PACS "main" (5 per patient); the latency of a study is from its
   store in Orthanc to its ImagingStudy being ``available`` on HAPI, through Orthanc's
   change log (polled every 2 s here) and the worker: no call to FHIR or the sidecar.

For each queue backend (SQLite file, then Redis), on the running local stack:
a gunicorn sidecar (2 processes) serving /notify, 2 worker processes (2 threads each), a
Subscription registered on HAPI, then a burst of N Patients created on HAPI (8 client
threads), each with an identifier of its own one-instance study in PACS "main".

Latency of a patient: from its Patient PUT on HAPI returning to the end of its sync (the
ImagingStudy transaction committed), read from the queue's ledger. Throughput: N divided
by the time from the first PUT to the last sync.

    python bench/sync.py [--mode notify|pacs|both] [--patients 1000] [--backends sqlite,redis]

Needs `deploy/local/stack.sh up` (HAPI + PACS main) and redis-server installed. Creates
Patients bench-sync-<backend>-<n> and deletes them and their ImagingStudies afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sidecar.settings import load_settings  # noqa: E402
from sidecar.wiring import build_registrar  # noqa: E402
from tests.conftest import PACS_PORTS, PacsServer, stack_env, system_session  # noqa: E402
from tests.integration.conftest_sync import (  # noqa: E402
    SyncStack,
    keep_alive,
    load_tiny_studies,
    read_queue,
    smallest_sample_instance,
    start_redis_server,
    sync_environment,
    tiny_patient_id,
    wait_until,
)

FHIR_JSON = "application/fhir+json"
SYSTEM = "urn:example:mrn:hosp-a"  # maps to PatientID + IssuerOfPatientID HOSP-A


class LocalStack:
    """What sync_environment needs from the test fixture, read from stack.sh."""

    def __init__(self) -> None:
        self._env = stack_env()
        self.notify_secret = self._env["SIDECAR_NOTIFY_SECRET"]
        self.relay_secret = self._env["SIDECAR_RELAY_SECRET"]
        self.fhir_base = self._env["SIDECAR_FHIR_BASE_URL"]
        self.pacs_main = PacsServer(
            "main", f"http://127.0.0.1:{PACS_PORTS['main']}", "orthanc", "orthanc"
        )
        self.pacs = {"main": self.pacs_main}

    def env(self) -> dict[str, str]:
        return dict(self._env)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_backend(stack: LocalStack, backend: str, patients: int) -> dict[str, float]:
    http = system_session(stack.env())  # HAPI enforces SMART tokens
    http.headers.update({"Content-Type": FHIR_JSON, "Accept": FHIR_JSON})
    redis_proc = None
    work = Path(tempfile.mkdtemp(prefix=f"bench-sync-{backend}-"))
    redis_url = None
    if backend == "redis":
        redis_proc, redis_url = start_redis_server(work, preferred_port=6391)
    env, port = sync_environment(
        stack,
        work,
        redis_url=redis_url,
        SIDECAR_SYNC_RETRY_DELAY_SECONDS="2",
        SIDECAR_LOG_LEVEL="WARNING",
    )
    running = SyncStack(env, port, work)
    registrar = build_registrar(load_settings(env))
    ids = [f"bench-sync-{backend}-{n}" for n in range(1, patients + 1)]
    put_done: dict[str, float] = {}
    try:
        running.start_web()
        for _ in range(2):
            running.start_worker()
        status = registrar.register_all(wait=True)["subscription"]["status"]
        assert status == "active", status

        def create(n: int) -> None:
            patient_id = ids[n - 1]
            body = {
                "resourceType": "Patient",
                "id": patient_id,
                "identifier": [{"system": SYSTEM, "value": tiny_patient_id(n)}],
            }
            http.put(f"{stack.fhir_base}/Patient/{patient_id}", json=body).raise_for_status()
            put_done[patient_id] = time.time()

        started = time.time()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(1, patients + 1)))
        created = time.time()
        queue = read_queue(env)

        def all_synced() -> bool:
            return all(
                (s := queue.ledger.get(p)) is not None and s.outcome == "synced" and not s.pending
                for p in ids
            )

        wait_until(all_synced, 1800, 2.0, what="every patient synced")
        synced_at = {p: queue.ledger.get(p).synced_at for p in ids}
        latencies = [synced_at[p] - put_done[p] for p in ids]
        finished = max(synced_at.values())
        return {
            "p50": statistics.median(latencies),
            "p95": percentile(latencies, 0.95),
            "max": max(latencies),
            "per_minute": patients / (finished - started) * 60,
            "create_seconds": created - started,
            "total_seconds": finished - started,
        }
    finally:
        tear_down(registrar, running, port, http, stack.fhir_base, ids, redis_proc, work)


def run_pacs_burst(
    stack: LocalStack, backend: str, patients: int = 20, studies: int = 100
) -> dict[str, float]:
    """Store ``studies`` new studies over ``patients`` existing Patients; per study, the time
    from its store in Orthanc to its ImagingStudy on HAPI."""
    from tests.integration.test_convergence import TRIGGERS, new_study

    http = system_session(stack.env())  # HAPI enforces SMART tokens
    http.headers.update(
        {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON, "Cache-Control": "no-cache"}
    )
    redis_proc = None
    work = Path(tempfile.mkdtemp(prefix=f"bench-pacs-{backend}-"))
    redis_url = None
    if backend == "redis":
        redis_proc, redis_url = start_redis_server(work, preferred_port=6392)
    env, port = sync_environment(
        stack, work, redis_url=redis_url, SIDECAR_LOG_LEVEL="WARNING", **TRIGGERS
    )
    running = SyncStack(env, port, work)
    registrar = build_registrar(load_settings(env))
    ids = [f"bench-pacs-{backend}-{n}" for n in range(patients)]
    mrns = [f"BENCH-PACS-{n:03d}" for n in range(patients)]
    template = smallest_sample_instance()
    try:
        running.start_web()
        running.start_worker()
        assert registrar.register_all(wait=True)["subscription"]["status"] == "active"
        for patient_id, mrn in zip(ids, mrns, strict=True):
            body = {
                "resourceType": "Patient",
                "id": patient_id,
                "identifier": [{"system": SYSTEM, "value": mrn}],
            }
            http.put(f"{stack.fhir_base}/Patient/{patient_id}", json=body).raise_for_status()
        queue = read_queue(env)
        wait_until(
            lambda: all(
                (q := queue.ledger.get(p)) is not None and q.outcome == "synced" for p in ids
            ),
            300,
            1.0,
            what="the Patients' first syncs",
        )
        stored_at: dict[str, tuple[str, float]] = {}
        for n in range(studies):
            patient_id, mrn = ids[n % patients], mrns[n % patients]
            uid = new_study(stack, template, mrn, f"bench-{n}")
            stored_at[uid] = (patient_id, time.time())
        arrived: dict[str, float] = {}

        def all_arrived() -> bool:
            for patient_id in ids:
                page = http.get(
                    f"{stack.fhir_base}/ImagingStudy",
                    params={"subject": f"Patient/{patient_id}", "_count": 200},
                ).json()
                now = time.time()
                for entry in page.get("entry", []):
                    study = entry["resource"]
                    uid = next(
                        i["value"] for i in study["identifier"] if i["system"] == "urn:dicom:uid"
                    ).removeprefix("urn:oid:")
                    if uid in stored_at and uid not in arrived and study["status"] == "available":
                        arrived[uid] = now
            return len(arrived) == len(stored_at)

        wait_until(all_arrived, 900, 0.5, what="every study in FHIR")
        latencies = [arrived[u] - stored_at[u][1] for u in stored_at]
        return {
            "p50": statistics.median(latencies),
            "p95": percentile(latencies, 0.95),
            "max": max(latencies),
        }
    finally:
        tear_down(registrar, running, port, http, stack.fhir_base, ids, redis_proc, work)


def tear_down(registrar, running, port, http, base, ids, redis_proc, work) -> None:
    """Subscription deleted, processes stopped, FHIR cleared of the run's resources."""
    registrar.fhir.delete("Subscription", registrar.settings.subscription_id)
    running.stop_all()
    # HAPI still delivers (the cleanup's DELETEs too) to a just-deleted Subscription: an
    # answering endpoint keeps those retries from stalling the next backend's deliveries
    keep_alive(port)
    cleanup(http, base, ids)
    if redis_proc is not None:
        redis_proc.terminate()
        redis_proc.wait(10)
    shutil.rmtree(work, ignore_errors=True)


def cleanup(http: requests.Session, base: str, ids: list[str]) -> None:
    for start in range(0, len(ids), 50):
        chunk = ids[start : start + 50]
        studies = http.get(
            f"{base}/ImagingStudy",
            params={
                "subject": ",".join(f"Patient/{i}" for i in chunk),
                "_elements": "id",
                "_count": 500,
            },
        ).json()
        entries = [
            {"request": {"method": "DELETE", "url": f"ImagingStudy/{e['resource']['id']}"}}
            for e in studies.get("entry", [])
        ]
        if entries:
            http.post(
                base, json={"resourceType": "Bundle", "type": "transaction", "entry": entries}
            )
        http.post(
            base,
            json={
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"request": {"method": "DELETE", "url": f"Patient/{i}"}} for i in chunk],
            },
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--backends", default="sqlite,redis")
    parser.add_argument("--mode", choices=("notify", "pacs", "both"), default="both")
    args = parser.parse_args()
    stack = LocalStack()
    backends = [b.strip() for b in args.backends.split(",")]
    if args.mode in ("pacs", "both"):
        print("PACS store -> FHIR: 100 new studies over 20 existing Patients (change log, 2 s)")
        print(f"{'backend':8} {'p50 s':>7} {'p95 s':>7} {'max s':>7}")
        for backend in backends:
            r = run_pacs_burst(stack, backend)
            print(f"{backend:8} {r['p50']:7.1f} {r['p95']:7.1f} {r['max']:7.1f}", flush=True)
        if args.mode == "pacs":
            return 0
    print(f"loading {args.patients} one-instance studies into PACS main ...", flush=True)
    load_tiny_studies(stack.pacs_main, args.patients)
    print(
        f"burst of {args.patients} new Patients, 2 web + 2 worker processes x 2 threads, "
        f"{os.cpu_count()} cores"
    )
    print(
        f"{'backend':8} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'patients/min':>13} "
        f"{'burst s':>8} {'total s':>8}"
    )
    results = {}
    for backend in args.backends.split(","):
        r = run_backend(stack, backend.strip(), args.patients)
        results[backend] = r
        print(
            f"{backend:8} {r['p50']:7.1f} {r['p95']:7.1f} {r['max']:7.1f} "
            f"{r['per_minute']:13.0f} {r['create_seconds']:8.1f} {r['total_seconds']:8.1f}",
            flush=True,
        )
    if {"sqlite", "redis"} <= results.keys():
        ratio = results["redis"]["per_minute"] / results["sqlite"]["per_minute"]
        print(f"redis/sqlite throughput ratio: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
