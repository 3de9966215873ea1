"""Registration on the real HAPI: idempotent, activated, repaired when removed; /healthz."""

from __future__ import annotations

import threading

import pytest
import requests

from sidecar.settings import load_settings
from sidecar.wiring import build_registrar
from tests.integration.conftest_sync import (
    SyncStack,
    delete_subscription,
    keep_alive,
    sync_environment,
    wait_until,
)

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def ack_server():
    return keep_alive(0)  # answers until the session ends: HAPI may still deliver to it


@pytest.fixture
def registrar(stack, tmp_path, ack_server):
    env, _port = sync_environment(
        stack,
        tmp_path,
        port=ack_server.port,
        SIDECAR_SUBSCRIPTION_ID="dicom-fhir-sidecar-regtest",
        SIDECAR_REGISTRATION_CHECK_SECONDS="1",
    )
    registrar = build_registrar(load_settings(env))
    yield registrar
    delete_subscription(registrar)


def test_registration_is_idempotent_and_the_subscription_becomes_active(registrar):
    first = registrar.register_all(wait=True)
    assert first["subscription"]["status"] == "active"
    assert first["operation_definition"] in ("created", "updated", "unchanged")
    version = registrar.fhir.read("Subscription", "dicom-fhir-sidecar-regtest")["meta"]["versionId"]
    again = registrar.register_all(wait=True)
    assert again == {
        "operation_definition": "unchanged",
        "sync_status_definition": "unchanged",
        "subscription": {
            "id": "dicom-fhir-sidecar-regtest",
            "status": "active",
            "action": "unchanged",
        },
    }
    stored = registrar.fhir.read("Subscription", "dicom-fhir-sidecar-regtest")
    assert stored["meta"]["versionId"] == version  # nothing was rewritten
    assert stored["criteria"] == "Patient?"
    assert stored["channel"]["payload"] == "application/fhir+json"
    # searched, not read: HAPI answers reads of OperationDefinition/{id} from its own
    (op,) = registrar.fhir.search("OperationDefinition", {"_id": "fetch-imaging"}, limit=1)
    assert op["code"] == "fetch-imaging" and op["url"].endswith("/fetch-imaging")


def test_a_removed_subscription_is_registered_again(registrar):
    stop = threading.Event()
    watcher = threading.Thread(target=registrar.watch, args=(stop,), daemon=True)
    watcher.start()
    try:
        wait_until(lambda: registrar.subscription_status()["status"] == "active", 60)
        registrar.fhir.delete("Subscription", "dicom-fhir-sidecar-regtest")
        wait_until(lambda: registrar.subscription_status()["status"] == "missing", 10, 0.05)
        wait_until(lambda: registrar.subscription_status()["status"] == "active", 30, what="repair")
    finally:
        stop.set()
        watcher.join(10)


def test_healthz_reports_the_subscription_and_the_queue(stack, tmp_path, fhir):
    env, port = sync_environment(stack, tmp_path)
    running = SyncStack(env, port, tmp_path)
    running.start_web()
    registrar = build_registrar(load_settings(env))
    try:
        registrar.register_all(wait=True)
        body = requests.get(f"{running.url}/healthz", timeout=30).json()
        assert body["sync"]["subscription"]["status"] == "active"
        assert body["sync"]["queue"]["backend"] == "sqlite"
        assert body["sync"]["queue"]["dead"] == 0
        assert body["sync"]["status"] == "ok"
        registrar.fhir.delete("Subscription", registrar.settings.subscription_id)
        # one probe serves every caller for 5 s (per web worker): the change shows after it
        body = wait_until(
            lambda: (
                (b := requests.get(f"{running.url}/healthz", timeout=30).json())["sync"][
                    "subscription"
                ]["status"]
                == "missing"
                and b
            ),
            20,
            0.5,
            what="/healthz to see the Subscription gone",
        )
        assert body["sync"]["subscription"]["status"] == "missing"
        assert body["sync"]["status"] == "degraded"
    finally:
        delete_subscription(registrar)
        running.stop_all()
        keep_alive(port)  # HAPI may still deliver to the deleted Subscription's endpoint
