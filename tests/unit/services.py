"""Services for unit tests: the real composition root on throw-away settings.

The adapters point at addresses nothing listens on unless a test passes a fake server's
URL; the queue is a SQLite file under the test's ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path

from sidecar import wiring
from sidecar.services import Services
from sidecar.settings import load_settings

NOWHERE = "http://127.0.0.1:9"  # discard port: connections are refused at once


def build_services(tmp_path: Path, **env: str) -> Services:
    """``wiring.build`` on ``SIDECAR_*`` values (names without the prefix) and tmp storage."""
    environ = {
        "SIDECAR_DATA_DIR": str(tmp_path),
        "SIDECAR_FHIR_BASE_URL": f"{NOWHERE}/fhir",
        "SIDECAR_PACS_MAIN_URL": f"{NOWHERE}/dicom-web",
        "SIDECAR_FHIR_RETRIES": "0",
        "SIDECAR_PACS_RETRIES": "0",
        **{f"SIDECAR_{k}": v for k, v in env.items()},
    }
    return wiring.build(load_settings(environ))
