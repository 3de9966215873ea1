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

bp = Blueprint("health", __name__)


@bp.get("/livez")
def livez() -> Response:
    return jsonify(status="ok")


@bp.get("/healthz")
def healthz() -> Response:
    report = current_services().health()
    response = jsonify(report)
    response.status_code = 503 if report["status"] == "down" else 200
    return response


@bp.get("/metrics")
def scrape() -> Response:
    body, content_type = metrics.exposition(current_services().queue)
    return Response(body, content_type=content_type)
