"""FhirStore against a fake FHIR server: what each answer means for the use case."""

from __future__ import annotations

import base64
import threading
import time

import pytest
from werkzeug import Response

from sidecar.adapters.fhir_store import FhirNotFound, FhirStore
from sidecar.core.fhir_values import identifier_token
from sidecar.core.outcome import (
    FetchError,
    FhirConflict,
    FhirRefused,
    FhirUnavailable,
    PatientNotFound,
)
from sidecar.settings import FhirSettings, HttpAuth

OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "x"}]}


def store_for(httpserver, **values) -> FhirStore:
    return FhirStore(
        FhirSettings(base_url=httpserver.url_for("/fhir"), timeout_seconds=1.0, **values)
    )


@pytest.mark.parametrize("status", [404, 410])
def test_a_missing_resource_reads_as_none_and_as_an_unknown_patient(httpserver, status):
    httpserver.expect_request("/fhir/Patient/p1").respond_with_json(OUTCOME, status=status)
    store = store_for(httpserver)
    assert store.read("Patient", "p1") is None
    with pytest.raises(PatientNotFound):
        store.read_patient("p1")


def test_an_id_that_is_not_a_fhir_id_never_reaches_the_server(httpserver):
    store = store_for(httpserver)
    assert store.read("Patient", "../Endpoint/x") is None
    assert store.read("Patient", "a" * 65) is None
    assert not httpserver.log


@pytest.mark.parametrize(
    ("status", "error", "answer"),
    [
        (412, FhirConflict, 409),
        (409, FhirConflict, 409),
        (401, FhirUnavailable, 502),
        (403, FhirUnavailable, 502),
        (500, FhirUnavailable, 502),
        (504, FhirUnavailable, 504),
        (400, FetchError, 502),
        (422, FetchError, 502),
    ],
)
def test_error_statuses_map_to_operation_outcome_statuses(httpserver, status, error, answer):
    httpserver.expect_request("/fhir/", method="POST").respond_with_json(OUTCOME, status=status)
    with pytest.raises(error) as err:
        store_for(httpserver).transaction([])
    assert err.value.status == answer
    assert err.value.outcome()["resourceType"] == "OperationOutcome"


def test_a_2xx_that_is_not_json_is_502(httpserver):
    httpserver.expect_request("/fhir/Patient/p1").respond_with_response(
        Response("<html>login</html>", content_type="text/html")
    )
    with pytest.raises(FhirUnavailable) as err:
        store_for(httpserver).read("Patient", "p1")
    assert err.value.status == 502 and "not FHIR JSON" in err.value.diagnostics


def test_a_slow_server_is_504(httpserver):
    def slow(_request):
        time.sleep(1.5)
        return Response("{}", content_type="application/fhir+json")

    httpserver.expect_request("/fhir/Patient/p1").respond_with_handler(slow)
    with pytest.raises(FhirUnavailable) as err:
        store_for(httpserver).read("Patient", "p1")
    assert err.value.status == 504


def test_reads_are_retried_after_a_503_writes_are_not(httpserver):
    httpserver.expect_ordered_request("/fhir/Patient/p1").respond_with_data("", status=503)
    httpserver.expect_ordered_request("/fhir/Patient/p1").respond_with_json(
        {"resourceType": "Patient", "id": "p1"}
    )
    store = store_for(httpserver)
    assert store.read("Patient", "p1")["id"] == "p1"
    httpserver.clear()
    httpserver.expect_request("/fhir/", method="POST").respond_with_data("", status=503)
    with pytest.raises(FhirUnavailable):
        store.transaction([])
    assert len(httpserver.log) == 1  # a transaction is never sent twice


def test_every_request_carries_the_credentials_and_no_cache(httpserver):
    httpserver.expect_request("/fhir/Patient/p1").respond_with_json({"resourceType": "Patient"})
    store = store_for(httpserver, auth=HttpAuth(mode="basic", username="u", password="pw"))
    store.read("Patient", "p1")
    request, _ = httpserver.log[0]
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"u:pw").decode()
    assert request.headers["Cache-Control"] == "no-cache"


def test_an_identifier_search_sends_the_escaped_token(httpserver):
    httpserver.expect_request("/fhir/Patient").respond_with_json(
        {"resourceType": "Bundle", "type": "searchset", "entry": []}
    )
    store_for(httpserver).find_patients(identifier_token("urn:a", "x,y|z\\$"))
    request, _ = httpserver.log[0]
    assert request.args["identifier"] == "urn:a|x\\,y\\|z\\\\\\$"


def test_conditional_create_reads_the_id_from_the_location(httpserver):
    httpserver.expect_request("/fhir/", method="POST").respond_with_json(
        {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [{"response": {"status": "200 OK", "location": "Patient/42/_history/3"}}],
        }
    )
    patient_id, created = store_for(httpserver).create_if_none_exist(
        {"resourceType": "Patient"}, "identifier=urn:a|1"
    )
    assert (patient_id, created) == ("42", False)
    entry = httpserver.log[0][0].get_json()["entry"][0]
    assert entry["request"] == {
        "method": "POST",
        "url": "Patient",
        "ifNoneExist": "identifier=urn:a|1",
    }


def test_store_is_thread_safe_for_concurrent_reads(httpserver):
    httpserver.expect_request("/fhir/Patient/p1").respond_with_json({"resourceType": "Patient"})
    store = store_for(httpserver)
    errors = []

    def read():
        try:
            store.read("Patient", "p1")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(httpserver.log) == 8


def test_not_found_on_a_write_is_its_own_error(httpserver):
    httpserver.expect_request("/fhir/Subscription/s", method="PUT").respond_with_json(
        OUTCOME, status=404
    )
    with pytest.raises(FhirNotFound):
        store_for(httpserver).put({"resourceType": "Subscription", "id": "s"})


def test_a_batch_posts_a_batch_bundle_and_returns_each_entry_answer(httpserver):
    entries = [
        {"resource": {"resourceType": "AuditEvent", "id": f"a{i}"}, "request": {"method": "PUT"}}
        for i in range(2)
    ]
    answer = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [{"response": {"status": "201 Created"}}, {"response": {"status": "400"}}],
    }
    httpserver.expect_request("/fhir/", method="POST").respond_with_json(answer)
    responses = store_for(httpserver).batch(entries)
    assert [r["response"]["status"] for r in responses] == ["201 Created", "400"]
    sent = httpserver.log[0][0].get_json()
    assert sent["type"] == "batch" and sent["entry"] == entries


def test_a_batch_of_puts_is_retried_after_a_503_one_refused_whole_is_fhir_refused(httpserver):
    entry = {"resource": {"resourceType": "AuditEvent", "id": "a"}, "request": {"method": "PUT"}}
    httpserver.expect_ordered_request("/fhir/", method="POST").respond_with_json(
        OUTCOME, status=503
    )
    httpserver.expect_ordered_request("/fhir/", method="POST").respond_with_json(
        {"resourceType": "Bundle", "type": "batch-response", "entry": []}
    )
    assert store_for(httpserver).batch([entry]) == []
    httpserver.clear()
    httpserver.expect_request("/fhir/", method="POST").respond_with_json(OUTCOME, status=400)
    with pytest.raises(FhirRefused) as refused:
        store_for(httpserver).batch([entry])
    assert refused.value.http_status == 400 and refused.value.status == 502


@pytest.mark.parametrize(
    ("status", "found"), [(200, True), (401, False), (403, False), (404, False)]
)
def test_read_as_sends_the_callers_token_alone(httpserver, status, found):
    body = {"resourceType": "Patient", "id": "p1"} if status == 200 else OUTCOME
    httpserver.expect_request("/fhir/Patient/p1").respond_with_json(body, status=status)
    store = store_for(httpserver, auth=HttpAuth(mode="basic", username="sidecar", password="pw"))
    assert (store.read_as("caller-token", "Patient", "p1") is not None) is found
    headers = httpserver.log[0][0].headers
    assert headers["Authorization"] == "Bearer caller-token"
    assert len(httpserver.log) == 1  # a refusal is the caller's: no retry, no renewal


def test_read_as_a_server_failure_is_still_an_error(httpserver):
    httpserver.expect_request("/fhir/Patient/p1").respond_with_json(OUTCOME, status=500)
    with pytest.raises(FhirUnavailable):
        store_for(httpserver, retries=0).read_as("t", "Patient", "p1")


def test_studies_and_their_endpoints_come_in_one_search_over_every_page(httpserver):
    """``_include=ImagingStudy:endpoint`` (R4 search 3.1.1.5.1): matches and included
    Endpoints are told apart by search.mode on every page, not by position."""
    study = {"resourceType": "ImagingStudy", "id": "s1", "endpoint": [{"reference": "Endpoint/e"}]}
    endpoint = {"resourceType": "Endpoint", "id": "e"}
    other = {"resourceType": "ImagingStudy", "id": "s2"}
    page2 = httpserver.url_for("/fhir/page2")
    first = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": page2}],
        "entry": [
            {"resource": study, "search": {"mode": "match"}},
            {"resource": endpoint, "search": {"mode": "include"}},
        ],
    }
    second = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": other, "search": {"mode": "match"}},
            {"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}},
        ],
    }
    httpserver.expect_request("/fhir/ImagingStudy").respond_with_json(first)
    httpserver.expect_request("/fhir/page2").respond_with_json(second)
    studies, endpoints = store_for(httpserver).studies_and_endpoints_of("p1")
    assert set(studies) == {"s1", "s2"} and endpoints == {"e": endpoint}
    asked = httpserver.log[0][0].args
    assert asked["subject"] == "Patient/p1" and asked["_include"] == "ImagingStudy:endpoint"
