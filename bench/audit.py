"""bench/audit: what the audit trail costs a request (issue 19, item 4: "$fetch-imaging p50
with audit within 5 % of without").

    python bench/audit.py [--sizes 1,10] [--rounds 15]

1. The outbox: one ``record`` (one event, one SQLite transaction with fsync) and one
   ``record_all`` of 101 events (a fetch of 100 new studies), in the data directory's
   file system.
2. ``$fetch-imaging`` through the web app (the operation records its event, the use case
   one per ImagingStudy written), on the local stack, with ``SIDECAR_AUDIT_ENABLED`` true
   and false, the two interleaved round by round so drifts of the shared machine hit both:
   a first fetch (every study created) and a steady-state fetch (nothing written).

Needs the local stack (deploy/local/stack.sh up); loads its data into PACS "main" as
bench/fetch.py does (the same patients).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import fetch as bench  # noqa: E402
from sidecar import wiring  # noqa: E402
from sidecar.core import audit  # noqa: E402
from sidecar.core.caller import Caller  # noqa: E402
from sidecar.settings import load_settings  # noqa: E402
from subscription_handlers.adapters.audit_outbox import SqliteAuditOutbox  # noqa: E402
from tests.conftest import SystemTokenAuth, stack_env  # noqa: E402

RELAY = "bench-audit-relay-secret-0123"
CALLER = Caller("t", "https://auth", "u1", "viewer", frozenset(), 0, fhir_user="Practitioner/1")


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def outbox_cost(folder: Path) -> str:
    box = SqliteAuditOutbox(folder / "queue.sqlite3")
    at = datetime.now(UTC)
    one, many = [], []
    for _ in range(200):
        event = audit.fetch_event(CALLER, "p1", [("modality", "CT")], 200, ["1.2.3"], at)
        started = time.perf_counter()
        box.record(event)
        one.append(time.perf_counter() - started)
    for _ in range(20):
        events = [audit.write_event("C", f"1.2.{i}", "p1", at, CALLER) for i in range(101)]
        started = time.perf_counter()
        box.record_all(events)
        many.append(time.perf_counter() - started)
    return (
        f"outbox record: p50 {statistics.median(one) * 1000:.2f} ms, p99 {p(one, 0.99) * 1000:.2f}"
        f" ms; record_all(101): p50 {statistics.median(many) * 1000:.1f} ms"
    )


def client(enabled: bool, folder: Path):
    fhir_env = {k: v for k, v in stack_env().items() if k.startswith("SIDECAR_FHIR_")}
    settings = load_settings(
        {
            **fhir_env,
            "SIDECAR_FHIR_BASE_URL": bench.FHIR,
            "SIDECAR_PACS_MAIN_URL": f"{bench.PACS}/dicom-web",
            "SIDECAR_PACS_MAIN_USERNAME": bench.AUTH[0],
            "SIDECAR_PACS_MAIN_PASSWORD": bench.AUTH[1],
            "SIDECAR_PATIENT_IDENTIFIERS": f"{bench.SYSTEM}|{bench.ISSUER}",
            "SIDECAR_PACS_TIMEOUT_SECONDS": "120",
            "SIDECAR_RELAY_SECRET": RELAY,
            "SIDECAR_DATA_DIR": str(folder / ("on" if enabled else "off")),
            "SIDECAR_AUDIT_ENABLED": str(enabled).lower(),
        }
    )
    services = wiring.build(settings)
    return services, wiring.web_app(services).test_client()


def timed(app, fhir_id: str) -> float:
    started = time.perf_counter()
    answer = app.post(
        f"/fhir/Patient/{fhir_id}/$fetch-imaging", headers={"X-Sidecar-Secret": RELAY}
    )
    seconds = time.perf_counter() - started
    if answer.status_code != 200:
        raise RuntimeError(f"fetch failed: {answer.status_code} {answer.get_data()[:300]!r}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-audit-", dir=ROOT / "var"))
    print(outbox_cost(folder))
    http = bench.Session()
    http.headers.update({"Content-Type": "application/fhir+json", "Cache-Control": "no-cache"})
    http.auth = SystemTokenAuth({k: v for k, v in stack_env().items() if k.startswith("SIDECAR_")})
    apps = {enabled: client(enabled, folder) for enabled in (True, False)}
    print(
        f"{'studies':>7} {'':>6} {'first, audit':>13} {'first, none':>12} {'ratio':>6}"
        f" {'steady, audit':>14} {'steady, none':>13} {'ratio':>6}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        pid = f"BENCH-{size:03d}"
        bench.ensure_loaded(pid, size)
        fhir_id = bench.put_patient(http, pid)
        uids = [bench.uid(pid, s) for s in range(size)]
        first: dict[bool, list[float]] = {True: [], False: []}
        steady: dict[bool, list[float]] = {True: [], False: []}
        for enabled in (True, False):  # warm-up: connections, imports
            timed(apps[enabled][1], fhir_id)
        for round_ in range(args.rounds):
            order = (True, False) if round_ % 2 == 0 else (False, True)
            for enabled in order:
                bench.delete_studies(http, uids)
                first[enabled].append(timed(apps[enabled][1], fhir_id))
                steady[enabled].append(timed(apps[enabled][1], fhir_id))
        f_on, f_off = statistics.median(first[True]), statistics.median(first[False])
        s_on, s_off = statistics.median(steady[True]), statistics.median(steady[False])
        print(
            f"{size:>7} {'p50':>6} {f_on * 1000:>11.0f}ms {f_off * 1000:>10.0f}ms"
            f" {f_on / f_off:>6.3f} {s_on * 1000:>12.0f}ms {s_off * 1000:>11.0f}ms"
            f" {s_on / s_off:>6.3f}"
        )
        bench.delete_studies(http, uids)
    for services, _ in apps.values():
        services.close()
    print("goal: ratio (with audit / without) <= 1.05")


if __name__ == "__main__":
    main()
