"""Reachability of what the use case needs (the FHIR server and every PACS), probed in
parallel; shared by ``/healthz`` and ``dicom-fhir check``."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sidecar.fhir_store import FhirStore
from sidecar.outcome import FetchError
from sidecar.pacs import PacsClient


def probe(check: Callable[[], object]) -> dict[str, Any]:
    """``{"status": "ok"|"down", "reason"?, "seconds"}`` for one check; never raises."""
    started = time.perf_counter()
    try:
        check()
        status: dict[str, Any] = {"status": "ok"}
    except FetchError as exc:
        status = {"status": "down", "reason": exc.diagnostics}
    except Exception as exc:  # noqa: BLE001 - a health probe reports, never raises
        status = {"status": "down", "reason": type(exc).__name__}
    status["seconds"] = round(time.perf_counter() - started, 3)
    return status


def connectivity(fhir: FhirStore, pacs: Mapping[str, PacsClient]) -> dict[str, dict[str, Any]]:
    """One probe per dependency: ``fhir`` and ``pacs:<name>``."""
    checks: dict[str, Callable[[], object]] = {"fhir": fhir.ping}
    checks.update({f"pacs:{name}": client.ping for name, client in pacs.items()})
    with ThreadPoolExecutor(len(checks)) as pool:
        return dict(zip(checks, pool.map(probe, checks.values()), strict=True))
