"""``/livez`` (the process answers), ``/healthz`` (the FHIR server and every PACS reachable,
plus the sync's section) and ``/metrics`` (Prometheus text format, every process's).

``/healthz`` answers 503 ``down`` when the FHIR server or a PACS is unreachable (a fetch
would fail), 200 ``degraded`` when they answer but the sync is not keeping FHIR up to date
(``$fetch-imaging`` still works, so a load balancer keeps the replica), 200 ``ok`` otherwise.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from sidecar.entry import metrics
from sidecar.entry.web.context import current_services
from sidecar.usecases.health import connectivity, sync_report

bp = Blueprint("health", __name__)


@bp.get("/livez")
def livez() -> Response:
    return jsonify(status="ok")


@bp.get("/healthz")
def healthz() -> Response:
    services = current_services()
    results = connectivity(services.fhir, services.pacs)
    healthy = all(r["status"] == "ok" for r in results.values())
    sync = sync_report(services.registrar, services.queue)
    status = "down" if not healthy else "ok" if sync.get("status") == "ok" else "degraded"
    response = jsonify(status=status, checks=results, sync=sync)
    response.status_code = 200 if healthy else 503
    return response


@bp.get("/metrics")
def scrape() -> Response:
    body, content_type = metrics.exposition(current_services().queue)
    return Response(body, content_type=content_type)
