"""The Flask app with a stub use case: routing, auth, parameters, OperationOutcome errors."""

from dataclasses import replace

import pytest

from sidecar import wiring
from sidecar.core.outcome import PacsTimeout
from sidecar.settings import load_settings
from sidecar.usecases.fetch_imaging import FetchResult
from tests.unit.services import build_services

RELAY, NOTIFY = "relay-secret-value-0123", "notify-secret-value-0123"


class StubFetch:
    def __init__(self):
        self.requests = []
        self.error = None

    def __call__(self, request):
        self.requests.append(request)
        if self.error:
            raise self.error
        return FetchResult({"id": "p1"}, [], [], [])


@pytest.fixture
def app_and_fetch(tmp_path):
    fetch = StubFetch()
    services = build_services(tmp_path, RELAY_SECRET=RELAY, NOTIFY_SECRET=NOTIFY)
    yield wiring.web_app(replace(services, fetch=fetch)).test_client(), fetch
    services.close()


AUTH = {"X-Sidecar-Secret": RELAY}


def test_instance_level_get(app_and_fetch):
    client, fetch = app_and_fetch
    r = client.get("/fhir/Patient/p1/$fetch-imaging?modality=CT&persist=false", headers=AUTH)
    assert r.status_code == 200 and r.content_type.startswith("application/fhir+json")
    assert r.json["resourceType"] == "Bundle" and r.json["type"] == "searchset"
    assert fetch.requests[0].patient_id == "p1" and fetch.requests[0].modalities == {"CT"}


def test_type_level_post_parameters(app_and_fetch):
    client, fetch = app_and_fetch
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "identifier", "valueString": "urn:x|12"}],
    }
    r = client.post(
        "/fhir/Patient/$fetch-imaging",
        json=body,
        headers={**AUTH, "Content-Type": "application/fhir+json"},
    )
    assert r.status_code == 200 and fetch.requests[0].identifier == ("urn:x", "12")


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"X-Sidecar-Secret": "x"}, 403), ({"X-Sidecar-Secret": NOTIFY}, 403)],
)
def test_auth_errors_are_operation_outcomes(app_and_fetch, headers, status):
    """The notify secret (stored in the Subscription) never authorizes $fetch-imaging."""
    client, fetch = app_and_fetch
    r = client.get("/fhir/Patient/p1/$fetch-imaging", headers=headers)
    assert r.status_code == status and r.json["resourceType"] == "OperationOutcome"
    assert not fetch.requests
    if status == 401:
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_bad_parameter_400_and_pacs_timeout_504(app_and_fetch):
    client, fetch = app_and_fetch
    r = client.get("/fhir/Patient/p1/$fetch-imaging?studyDate=xx", headers=AUTH)
    assert r.status_code == 400 and r.json["issue"][0]["code"] == "invalid"
    fetch.error = PacsTimeout("slow")
    r = client.post("/fhir/Patient/p1/$fetch-imaging", headers=AUTH)
    assert r.status_code == 504 and r.json["issue"][0]["code"] == "timeout"


def test_a_get_that_would_write_is_405_and_reaches_no_use_case(app_and_fetch):
    client, fetch = app_and_fetch
    for query in ("", "?persist=true"):
        r = client.get(f"/fhir/Patient/p1/$fetch-imaging{query}", headers=AUTH)
        assert r.status_code == 405 and r.json["issue"][0]["code"] == "not-supported"
        assert r.headers["Allow"] == "POST" and "POST" in r.json["issue"][0]["diagnostics"]
    assert not fetch.requests
    r = client.get("/fhir/Patient/p1/$fetch-imaging?persist=false", headers=AUTH)
    assert r.status_code == 200 and fetch.requests[0].persist is False


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Parameters", "parameter": "persist=false"},
        {"resourceType": "Parameters", "parameter": {"name": "persist"}},
        {"resourceType": "Parameters", "parameter": ["persist"]},
        {"resourceType": "Parameters", "parameter": [{"name": "persist", "valueBoolean": "no"}]},
        {"resourceType": "Parameters", "parameter": [{"name": "persist", "valueString": "false"}]},
        {"resourceType": "Parameters", "parameter": [{"name": "detail", "valueCode": 3}]},
        {"resourceType": "Parameters", "parameter": [{"name": 7, "valueString": "x"}]},
        {"resourceType": "Parameters", "parameter": [{"name": "identifier"}]},
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "identifier", "valueIdentifier": "x"}],
        },
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "detail", "valueCode": "s", "valueString": "s"}],
        },
        {"resourceType": "Parameters", "parameter": [{"name": "x", "part": []}]},
        [1, 2, 3],
        "Parameters",
    ],
)
def test_malformed_parameters_bodies_are_400(app_and_fetch, body):
    client, fetch = app_and_fetch
    r = client.post("/fhir/Patient/p1/$fetch-imaging", json=body, headers=AUTH)
    assert r.status_code == 400 and r.json["resourceType"] == "OperationOutcome", r.json
    assert not fetch.requests


def test_deep_large_and_undecodable_bodies(app_and_fetch):
    client, fetch = app_and_fetch
    deep = "[" * 20000 + "]" * 20000  # 40 KB: under the size limit, far over the depth
    headers = {**AUTH, "Content-Type": "application/fhir+json"}
    r = client.post("/fhir/Patient/p1/$fetch-imaging", data=deep, headers=headers)
    assert r.status_code == 400 and "nested" in r.json["issue"][0]["diagnostics"]
    big = '{"resourceType": "Parameters", "x": "' + "a" * 100_000 + '"}'
    r = client.post("/fhir/Patient/p1/$fetch-imaging", data=big, headers=headers)
    assert r.status_code == 413 and r.json["issue"][0]["code"] == "too-long"
    r = client.post("/fhir/Patient/p1/$fetch-imaging", data=b"\xff\xfe{", headers=headers)
    assert r.status_code == 400
    huge = b"x" * (3 * 1024 * 1024)
    notify = {"X-Sidecar-Secret": NOTIFY, "Content-Type": "application/fhir+json"}
    r = client.put("/notify/Patient/p1", data=huge, headers=notify)
    assert r.status_code == 413 and r.json["resourceType"] == "OperationOutcome"
    assert not fetch.requests


def test_a_wrong_method_is_an_operation_outcome_with_allow(app_and_fetch):
    client, _ = app_and_fetch
    r = client.delete("/fhir/Patient/p1/$fetch-imaging", headers=AUTH)
    assert r.status_code == 405 and r.json["resourceType"] == "OperationOutcome"
    assert "POST" in r.headers["Allow"]


def test_unknown_route_is_an_operation_outcome(app_and_fetch):
    client, _ = app_and_fetch
    r = client.get("/fhir/Nope", headers=AUTH)
    assert r.status_code == 404 and r.json["resourceType"] == "OperationOutcome"


def test_livez_and_metrics(app_and_fetch):
    client, _ = app_and_fetch
    assert client.get("/livez").json == {"status": "ok"}
    scraped = client.get("/metrics").data
    assert b"sidecar_fetch_total" in scraped
    assert b'sidecar_sync_queue_patients{state="pending"} 0.0' in scraped


def test_trigger_state_reaches_metrics_and_healthz(tmp_path):
    services = build_services(tmp_path, RELAY_SECRET=RELAY, NOTIFY_SECRET=NOTIFY)
    store = services.queue.triggers
    store.update_status(
        "changes:main",
        {"interval": 10, "last_ok": 1.0e9, "lag": 3, "lag_unit": "changes"},
        enqueued=4,
    )
    client = wiring.web_app(services).test_client()
    scraped = client.get("/metrics").data.decode()
    assert 'sidecar_trigger_lag{trigger="changes:main",unit="changes"} 3.0' in scraped
    assert 'sidecar_trigger_submitted_total{trigger="changes:main"} 4.0' in scraped
    triggers = client.get("/healthz").json["sync"]["triggers"]
    assert "no successful step for three intervals" in triggers["changes:main"]["problem"]
    services.close()


def test_app_refuses_to_start_without_caller_credentials(tmp_path):
    with pytest.raises(RuntimeError, match="SIDECAR_RELAY_SECRET"):
        wiring.create_web_app(load_settings({"SIDECAR_DATA_DIR": str(tmp_path)}))


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
def test_head_and_options_never_run_the_fetch(app_and_fetch, method):
    client, fetch = app_and_fetch
    r = client.open("/fhir/Patient/p1/$fetch-imaging", method=method, headers=AUTH)
    assert r.status_code == 405 and not fetch.requests


def test_a_chunked_body_is_bounded_like_any_other(app_and_fetch):
    import io

    client, fetch = app_and_fetch
    data = b"persist=false&" + b"x=" + b"a" * 100_000
    r = client.post(
        "/fhir/Patient/p1/$fetch-imaging",
        input_stream=io.BytesIO(data),
        headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert r.status_code == 413 and r.json["issue"][0]["code"] == "too-long"
    assert not fetch.requests
    small = b"persist=false"
    r = client.post(
        "/fhir/Patient/p1/$fetch-imaging",
        input_stream=io.BytesIO(small),
        headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert r.status_code == 200 and fetch.requests[0].persist is False


def test_healthz_probes_the_dependencies_once_for_many_callers(tmp_path):
    """Each probe costs a FHIR request, a Subscription read and a QIDO per PACS, and the
    endpoint is open: twenty callers at once, and again at once, share one probe."""
    from concurrent.futures import ThreadPoolExecutor

    services = build_services(tmp_path, RELAY_SECRET=RELAY, NOTIFY_SECRET=NOTIFY)
    client = wiring.web_app(services).test_client()
    try:
        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(lambda _: client.get("/healthz").status_code, range(20)))
        statuses.append(client.get("/healthz").status_code)
        assert set(statuses) == {503}  # nothing listens at the fake addresses
        assert services.health.probes == 1
    finally:
        services.close()
