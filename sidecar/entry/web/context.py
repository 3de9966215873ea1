"""Where a request handler finds the process's Services: ``current_services()``.

``create_app`` stores them in ``app.extensions`` (Flask's place for per-app state).
"""

from __future__ import annotations

from flask import Flask, current_app

from sidecar.services import Services

EXTENSION = "sidecar"


def attach(app: Flask, services: Services) -> None:
    app.extensions[EXTENSION] = services


def current_services() -> Services:
    """The Services of the app handling the current request."""
    return current_app.extensions[EXTENSION]
