"""The composition root: the one place that reads the settings and builds the objects.

- :mod:`sidecar.wiring.root`: ``build()`` (settings -> adapters -> use cases -> queue ->
  registrar -> triggers, as :class:`~sidecar.services.Services`), ``web_app()``,
  ``create_web_app()`` (gunicorn's entry: ``'sidecar.wiring:create_web_app()'``);
- :mod:`sidecar.wiring.cli`: ``dicom-fhir``, every command in one parser;
- :mod:`sidecar.wiring.server`: ``dicom-fhir serve`` (gunicorn, the embedded worker,
  the registration thread).

The root's names are reached through this package lazily (``wiring.build``), so the
command line starts without importing every adapter: ``serve`` must choose prometheus's
multiprocess mode before any metric module loads.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(import_module("sidecar.wiring.root"), name)
