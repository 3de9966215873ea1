"""``/livez`` (the process answers), ``/healthz`` (FHIR server and every PACS reachable) and
``/metrics`` (Prometheus text format)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from sidecar.health import connectivity

bp = Blueprint("health", __name__)


@bp.get("/livez")
def livez() -> Response:
    return jsonify(status="ok")


@bp.get("/healthz")
def healthz() -> Response:
    results = connectivity(current_app.config["SIDECAR_FETCH"])
    healthy = all(r["status"] == "ok" for r in results.values())
    # sections other packages register (the sync: Subscription status, queue, dead letters)
    extra = {
        name: report()
        for name, report in current_app.extensions.get("sidecar_health_checks", {}).items()
    }
    response = jsonify(status="ok" if healthy else "down", checks=results, **extra)
    response.status_code = 200 if healthy else 503
    return response


@bp.get("/metrics")
def metrics() -> Response:
    registry = REGISTRY
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import CollectorRegistry, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
