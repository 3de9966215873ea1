"""The Subscription we register, how a stored one is compared, and the OperationDefinitions."""

from __future__ import annotations

import copy

from sidecar.core import sync_explanation as sx
from sidecar.core.fetch_params import KNOWN
from sidecar.core.mapping import validate_r4
from sidecar.settings import SyncSettings
from subscription_handlers.usecases.registration import (
    SEND_DELETE_MESSAGES,
    SYNC_STATUS_DEFINITION_FILE,
    desired_subscription,
    operation_definition,
    subscription_matches,
)

SETTINGS = SyncSettings(notify_url="http://side:8090/notify", subscription_id="sub-1")
NOTIFY_SECRET = "abc"


def test_the_subscription_is_a_patient_rest_hook_with_payload_secret_and_deletes():
    sub = desired_subscription(SETTINGS, NOTIFY_SECRET)
    assert sub["id"] == "sub-1" and sub["status"] == "requested"
    assert sub["criteria"] == "Patient?"
    channel = sub["channel"]
    assert channel["type"] == "rest-hook"
    assert channel["endpoint"] == "http://side:8090/notify"
    assert channel["payload"] == "application/fhir+json"
    assert channel["header"] == ["X-Sidecar-Secret: abc"]
    assert {"url": SEND_DELETE_MESSAGES, "valueBoolean": True} in channel["extension"]


def test_a_stored_copy_matches_regardless_of_status_and_server_elements():
    stored = copy.deepcopy(desired_subscription(SETTINGS, NOTIFY_SECRET))
    stored.update(status="active", meta={"versionId": "3"})
    stored["channel"]["endpoint"] += "/"
    assert subscription_matches(stored, desired_subscription(SETTINGS, NOTIFY_SECRET))


def test_a_changed_secret_endpoint_or_missing_delete_flag_does_not_match():
    desired = desired_subscription(SETTINGS, NOTIFY_SECRET)
    for change in (
        lambda s: s["channel"].update(header=["X-Sidecar-Secret: old"]),
        lambda s: s["channel"].update(endpoint="http://elsewhere/notify"),
        lambda s: s["channel"].pop("extension"),
        lambda s: s["channel"].update(payload="application/fhir+xml"),
        lambda s: s.update(criteria="Patient?active=true"),
    ):
        stored = copy.deepcopy(desired)
        change(stored)
        assert not subscription_matches(stored, desired)
    assert not subscription_matches(None, desired)


def test_the_operation_definition_describes_the_operation():
    od = operation_definition()
    assert od["resourceType"] == "OperationDefinition"
    assert (od["id"], od["code"], od["resource"]) == ("fetch-imaging", "fetch-imaging", ["Patient"])
    assert od["url"].endswith("/OperationDefinition/fetch-imaging")
    assert (od["system"], od["type"], od["instance"], od["affectsState"]) == (
        False,
        True,
        True,
        True,
    )
    params = {p["name"]: p for p in od["parameter"]}
    # every parameter the operation takes is described, and nothing else
    assert {n for n, p in params.items() if p["use"] == "in"} == KNOWN
    assert (params["return"]["type"], params["return"]["min"], params["return"]["max"]) == (
        "Bundle",
        1,
        "1",
    )
    assert params["studyDate"]["max"] == "2" and "ge" in params["studyDate"]["documentation"]
    assert params["modality"]["max"] == "*"
    assert params["detail"]["type"] == "code" and params["persist"]["type"] == "boolean"


def test_the_sync_status_definition_describes_what_the_sidecar_answers():
    od = operation_definition(SYNC_STATUS_DEFINITION_FILE)
    validate_r4(od)
    assert (od["id"], od["code"], od["resource"]) == (
        "imaging-sync-status",
        "imaging-sync-status",
        ["Patient"],
    )
    assert (od["system"], od["type"], od["instance"], od["affectsState"]) == (
        False,
        False,
        True,
        False,
    )
    assert not [p for p in od["parameter"] if p["use"] == "in"]  # the Patient is the URL's
    study = next(p for p in od["parameter"] if p["name"] == "study")
    states = next(p for p in study["part"] if p["name"] == "state")["documentation"]
    assert all(state in states for state in sx.STATES if state not in ("no-patient", "not-found"))
    # every parameter the Parameters answer uses is described
    described = {p["name"] for p in od["parameter"]}
    assert described == {
        "patient",
        "pacsPatient",
        "refusedIdentifier",
        "sync",
        "conflict",
        "unreachable",
        "count",
        "study",
    }
