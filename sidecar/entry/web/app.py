"""The Flask application factory: ``create_app(services)`` (the composition root calls it).

Serve with ``dicom-fhir serve``, or with gunicorn directly:

    gunicorn -k gthread --threads 8 -b 127.0.0.1:8090 'sidecar.wiring:create_web_app()'
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable

from flask import Blueprint, Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from sidecar.entry.web import admin, gateway, health, operation
from sidecar.entry.web.context import attach
from sidecar.entry.web.responses import outcome_response
from sidecar.entry.web.viewer import ViewerConfig, operator_page_blueprint, viewer_blueprint
from sidecar.services import Services

log = logging.getLogger("sidecar.entry.web")
#: an X-Request-Id kept as the caller sent it (anything else is replaced: it is logged)
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
MAX_BODY_BYTES = 2 * 1024 * 1024  # /notify takes Patients up to 1 MB; $fetch-imaging far less
#: R4 issue-type codes for the HTTP errors Flask raises itself.
ISSUE_CODES = {
    404: "not-found",
    405: "not-supported",
    413: "too-long",
    414: "too-long",
    415: "not-supported",
    431: "too-long",
}


def create_app(services: Services, blueprints: Iterable[Blueprint] = ()) -> Flask:
    """The sidecar's HTTP API on these services: ``$fetch-imaging``, ``/livez``,
    ``/healthz``, ``/metrics``, and the ``blueprints`` the composition root adds (the
    sync's ``/notify``)."""
    app = Flask("sidecar")
    attach(app, services)
    app.register_blueprint(operation.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(gateway.bp)  # /dicomweb/<pacs>/...: the imaging gateway
    app.register_blueprint(admin.bp)  # /admin/api/..., $imaging-sync-status: operators only
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    settings = services.settings
    if settings.auth.issuer:  # the viewer signs users in at the authorization server
        viewer_config = ViewerConfig(
            fhir_base_url=settings.fhir.public_url or settings.fhir.base_url,
            issuer=settings.auth.issuer,
            client_id=settings.auth.viewer_client_id,
            imaging_origins=(settings.public_url,),
        )
        app.register_blueprint(viewer_blueprint(viewer_config))
        app.register_blueprint(operator_page_blueprint(viewer_config))  # /admin/

    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES  # larger bodies: 413, never read

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = ISSUE_CODES.get(status, "processing" if status < 500 else "exception")
        response = outcome_response(status, code, exc.description or exc.name)
        if status == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error", extra={"path": request.path})
        return outcome_response(500, "exception", "internal error", severity="fatal")

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        # a caller's id is kept only when it is an id: it goes into every log line
        given = request.headers.get("X-Request-Id", "")
        g.request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex

    @app.after_request
    def _log(response: Response) -> Response:
        if request.path not in ("/livez", "/metrics"):
            log.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "seconds": round(time.perf_counter() - g.started, 3),
                    "request_id": g.request_id,
                },
            )
        response.headers["X-Request-Id"] = g.request_id
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if response.status_code >= 400:
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app
