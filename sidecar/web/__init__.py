"""Flask application factory. Serve with gunicorn:

gunicorn -k gthread --threads 8 -b 127.0.0.1:8090 'sidecar.web:create_app()'
"""

from __future__ import annotations

import logging
import time
import uuid

from flask import Flask, g, request

from sidecar.settings import Settings
from sidecar.web import health, operation
from sidecar.web.logs import configure_logging

log = logging.getLogger("sidecar.web")


def create_app(settings: Settings | None = None, fetch=None) -> Flask:
    """Build the app. ``settings`` default to ``Settings.from_env()``; ``fetch`` (the use
    case, a FetchImaging) defaults to ``build_fetch_imaging(settings)``."""
    settings = settings or Settings.from_env()
    if not (settings.shared_secret or settings.bearer_tokens or settings.allow_anonymous):
        raise RuntimeError(
            "no caller credential configured: set SIDECAR_SHARED_SECRET and/or "
            "SIDECAR_BEARER_TOKENS (or SIDECAR_ALLOW_ANONYMOUS=true for a closed network)"
        )
    configure_logging(settings.log_level)
    if fetch is None:
        from sidecar.fetch_imaging import build_fetch_imaging

        fetch = build_fetch_imaging(settings)
    app = Flask("sidecar")
    app.config["SIDECAR_SETTINGS"] = settings
    app.config["SIDECAR_FETCH"] = fetch
    app.register_blueprint(operation.bp)
    app.register_blueprint(health.bp)
    from subscription_handlers import notify  # PUT/DELETE /notify/Patient/{id} -> sync queue

    notify.init_app(app)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        from werkzeug.exceptions import HTTPException

        from sidecar.outcome import issue, operation_outcome
        from sidecar.web.operation import fhir_response

        if isinstance(exc, HTTPException):
            body = operation_outcome([issue("error", "not-supported", exc.description or "")])
            return fhir_response(body, exc.code or 500)
        log.exception("unexpected error", extra={"path": request.path})
        return fhir_response(
            operation_outcome([issue("fatal", "exception", "internal error")]), 500
        )

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        g.request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex

    @app.after_request
    def _log(response):
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
        return response

    return app
