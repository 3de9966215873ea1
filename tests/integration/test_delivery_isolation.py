"""A REST-hook endpoint that is down must not hold up HAPI's deliveries to anyone else (#18).

On the real HAPI of the local stack: Subscription S1 points at a dead endpoint (a refused port,
or a listener that never answers, like a SIGSTOPped sidecar), S2 at a live loopback receiver.
HAPI queues each Subscription's deliveries behind two threads of its own, up to 1000; a full
queue blocks matching for every Subscription. So a burst of more Patients than that reaches S2
only if S1's queue is dropped: our HAPI build sets S1 to status ``error`` once its deliveries
have failed for ``rest-hook-guard.error-after-seconds`` (30) and drops what it queued. Without
that, S1 drains two deliveries a minute and S2 receives nothing more for hours.

The loop test does it with a real sidecar: killed, its Subscription goes to ``error``; started
again, it registers the Subscription (``active``) and its catch-up trigger syncs the Patients
changed meanwhile.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.conftest import clear_fhir
from tests.integration.conftest_sync import (
    ROOT,
    free_port,
    read_queue,
    sync_environment,
    wait_until,
)

pytestmark = pytest.mark.stack

BURST = 1100  # Patients: more than HAPI's delivery queue of one Subscription (1000)
ERROR_AFTER = 30  # s, rest-hook-guard.error-after-seconds of our HAPI build
READ_TIMEOUT = 10  # s, rest-hook-guard.read-timeout-seconds: one attempt at a silent endpoint
# S1 is set to error after ERROR_AFTER plus one attempt in flight; then S2 gets the rest
DELIVERED_WITHIN = ERROR_AFTER + 2 * READ_TIMEOUT + 40
FHIR_JSON = "application/fhir+json"
NO_CACHE = {"Cache-Control": "no-cache"}


class Receiver:
    """A live REST-hook endpoint on loopback: when each Patient's PUT first arrived."""

    def __init__(self) -> None:
        arrived: dict[str, float] = {}
        self.arrived = arrived

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                arrived.setdefault(self.path.rsplit("/", 1)[-1], time.monotonic())
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_DELETE = do_PUT

            def log_message(self, *args) -> None:
                pass

        # left running until the session ends: HAPI may still deliver to a deleted Subscription
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@contextmanager
def dead_endpoint(kind: str) -> Iterator[str]:
    """``refused``: nothing listens. ``hanging``: a listener that never accepts, so connections
    are made (the kernel's backlog) and no answer ever comes, as from a stopped process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        if kind == "hanging":
            sock.listen(8)
            yield url
            return
    yield url


def put_subscription(http: requests.Session, base: str, sub_id: str, endpoint: str) -> None:
    body = {
        "resourceType": "Subscription",
        "id": sub_id,
        "status": "requested",
        "reason": "test_delivery_isolation",
        "criteria": "Patient?",
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": FHIR_JSON},
    }
    http.put(f"{base}/Subscription/{sub_id}", json=body).raise_for_status()


def subscription(http: requests.Session, base: str, sub_id: str) -> dict:
    return http.get(f"{base}/Subscription/{sub_id}", headers=NO_CACHE).json()


def put_patients(http: requests.Session, base: str, ids: list[str]) -> None:
    for start in range(0, len(ids), 100):
        entries = [
            {
                "resource": {"resourceType": "Patient", "id": i},
                "request": {"method": "PUT", "url": f"Patient/{i}"},
            }
            for i in ids[start : start + 100]
        ]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        http.post(base, json=bundle).raise_for_status()


@pytest.mark.parametrize("dead", ["refused", "hanging"])
def test_a_dead_endpoint_does_not_starve_other_subscriptions(stack, fhir_http, dead):
    base = stack.fhir_base
    tag = uuid.uuid4().hex[:8]
    s1, s2 = f"dead-{tag}", f"live-{tag}"
    receiver = Receiver()
    burst = [f"burst-{tag}-{n}" for n in range(BURST)]
    probe = f"probe-{tag}"
    try:
        with dead_endpoint(dead) as endpoint:
            put_subscription(fhir_http, base, s1, endpoint)
            put_subscription(fhir_http, base, s2, receiver.url)
            for sub_id in (s1, s2):
                wait_until(
                    lambda s=sub_id: subscription(fhir_http, base, s)["status"] == "active",
                    60,
                    0.5,
                    what=f"Subscription {sub_id} active",
                )
            time.sleep(6)  # HAPI's registry loads an activated Subscription within its 5 s tick
            put_patients(fhir_http, base, burst)
            fhir_http.put(
                f"{base}/Patient/{probe}", json={"resourceType": "Patient", "id": probe}
            ).raise_for_status()
            written = time.monotonic()

            def all_arrived() -> bool:
                got = receiver.arrived.keys()
                return probe in got and len(got & set(burst)) == BURST

            try:
                wait_until(all_arrived, DELIVERED_WITHIN, 1.0, what="S2's deliveries")
            except AssertionError:
                got = len(receiver.arrived.keys() & set(burst))
                raise AssertionError(
                    f"S2 got {got}/{BURST} of the burst, probe {probe in receiver.arrived}, within "
                    f"{DELIVERED_WITHIN} s while S1's endpoint was {dead}: S1 holds up S2"
                ) from None
            latency = receiver.arrived[probe] - written
            print(f"S1 {dead}: S2 got the burst and the probe {latency:.1f} s after the write")

            stored = subscription(fhir_http, base, s1)
            assert stored["status"] == "error", stored
            why = stored["error"]
            assert why.startswith(f"REST-hook deliveries to {endpoint} failed for "), stored
            assert tag not in why, "no Patient id in the error text"
    finally:
        for sub_id in (s1, s2):
            fhir_http.delete(f"{base}/Subscription/{sub_id}")
        clear_fhir(fhir_http, base, types=("Patient",))


# -- the whole loop with a real sidecar -------------------------------------------------------

LOOP_SYSTEM = "urn:example:mrn:hosp-a"  # mapped to IssuerOfPatientID HOSP-A in the test settings


def start_sidecar(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    """``dicom-fhir serve`` (gunicorn, embedded worker, registration) in a session of its own,
    so that the test can kill all of it as a crash would."""
    with open(log, "a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "serve", "--bind", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(log.read_text()[-3000:])
        try:
            return requests.get(f"http://127.0.0.1:{port}/livez", timeout=2).ok
        except requests.RequestException:
            return False

    wait_until(up, 90, 0.5, what="sidecar serve")
    return proc


def crash(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def test_a_crashed_sidecar_recovers_the_whole_loop(stack, fhir_http, tmp_path):
    """Sidecar killed -> its Subscription ``error`` -> sidecar back -> ``active`` again -> the
    Patients changed meanwhile are synced by its catch-up trigger."""
    base = stack.fhir_base
    port = free_port()
    env, port = sync_environment(
        stack,
        tmp_path,
        port=port,
        SIDECAR_TRIGGERS="true",  # the catch-up alone: no PACS feed, no sweep, no resync
        SIDECAR_PACS_MAIN_CHANGES="none",
        SIDECAR_PACS_SECOND_CHANGES="none",
        SIDECAR_PACS_MAIN_ORTHANC_URL="",  # (empty: not set) only with CHANGES=orthanc
        SIDECAR_PACS_SECOND_ORTHANC_URL="",
        SIDECAR_SWEEP_SECONDS="3600",
        SIDECAR_RESYNC_SECONDS="86400",
        SIDECAR_CATCH_UP_SECONDS="5",
        SIDECAR_REGISTRATION_CHECK_SECONDS="5",
    )
    sub_id = env["SIDECAR_SUBSCRIPTION_ID"]
    log = tmp_path / "serve.log"
    tag = uuid.uuid4().hex[:8].upper()
    meanwhile = [f"loop-{tag.lower()}-{n}" for n in range(3)]
    proc = start_sidecar(env, port, log)
    try:
        wait_until(
            lambda: subscription(fhir_http, base, sub_id).get("status") == "active",
            90,
            0.5,
            what="the sidecar's Subscription active",
        )
        crash(proc)
        down = time.monotonic()
        for n, patient_id in enumerate(meanwhile):
            body = {
                "resourceType": "Patient",
                "id": patient_id,
                "identifier": [{"system": LOOP_SYSTEM, "value": f"LOOP-{tag}-{n}"}],
            }
            fhir_http.put(f"{base}/Patient/{patient_id}", json=body).raise_for_status()
        stored = wait_until(
            lambda: (s := subscription(fhir_http, base, sub_id)).get("status") == "error" and s,
            ERROR_AFTER + 2 * READ_TIMEOUT + 30,
            1.0,
            what="the dead sidecar's Subscription in error",
        )
        print(f"Subscription error {time.monotonic() - down:.0f} s after the crash")
        assert f"127.0.0.1:{port} failed for" in stored["error"], stored

        back = time.monotonic()
        proc = start_sidecar(env, port, log)
        wait_until(
            lambda: subscription(fhir_http, base, sub_id).get("status") == "active",
            60,
            0.5,
            what="the Subscription active again (registered by the sidecar at start)",
        )
        print(f"sidecar back: Subscription active after {time.monotonic() - back:.1f} s")
        queue = read_queue(env)
        try:

            def synced() -> bool:
                return all(
                    (s := queue.ledger.get(p)) is not None and s.outcome == "synced"
                    for p in meanwhile
                )

            wait_until(synced, 90, 1.0, what="the Patients changed while the sidecar was down")
            print(f"the Patients written meanwhile synced {time.monotonic() - back:.1f} s after")
        finally:
            queue.close()
    finally:
        for patient_id in meanwhile:  # while the sidecar still answers their DELETE deliveries
            fhir_http.delete(f"{base}/Patient/{patient_id}")
        fhir_http.delete(f"{base}/Subscription/{sub_id}")
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                crash(proc)
