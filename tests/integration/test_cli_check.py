"""`dicom-fhir check`: the settings validated, each dependency probed, exit 0 only if all answer."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, Stack, with_pacs

pytestmark = pytest.mark.stack


def run_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "check"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_reports_each_dependency(stack: Stack) -> None:
    env = {
        **with_pacs(stack.env(), ["main", "gone"]),
        "SIDECAR_SUBSCRIPTION_ID": "check-test-never-registered",
        "SIDECAR_PACS_GONE_URL": "http://127.0.0.1:9/dicom-web",  # nothing listens on 9
        "SIDECAR_PACS_CONNECT_TIMEOUT_SECONDS": "1",
    }
    done = run_check(env)
    lines = done.stdout.splitlines()
    assert f"settings: ok (FHIR {stack.fhir_base}; PACS: main, gone)" in lines
    assert "fhir: ok" in lines
    assert "pacs:main: ok" in lines
    assert any(line.startswith("pacs:gone: down") for line in lines)
    assert "subscription: down  (missing: dicom-fhir serve registers it at start," in done.stdout
    assert done.returncode == 1


def test_check_refuses_invalid_settings(stack: Stack) -> None:
    """A bad setting is exit code 2, as every command's (1: a dependency is down)."""
    done = run_check({**stack.env(), "SIDECAR_PACS_TIMEOUT_SECONDS": "soon"})
    assert done.returncode == 2
    assert done.stderr.startswith("settings: invalid: SIDECAR_PACS_TIMEOUT_SECONDS")
