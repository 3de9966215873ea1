"""The imaging gateway's requests on the audit trail: a stub gateway, the real blueprint,
the real aggregator, a fake JWKS for the callers' tokens."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from sidecar import wiring
from sidecar.core.imaging_access import StudyAccess
from sidecar.usecases.audit_trail import RetrievalAggregator
from sidecar.usecases.gateway import NotAllowed
from tests.unit.services import build_services
from tests.unit.test_audit_trail import ListSink, requests_of
from tests.unit.test_tokens import AUD, issuer, token  # noqa: F401 - fixture

STUDY, OTHER = "1.2.840.10", "1.2.840.11"
ROW = {"0020000D": {"vr": "UI", "Value": [STUDY]}}


class Answer:
    status = 200
    headers = {"Content-Type": "application/dicom"}

    def chunks(self):
        yield b"DICM"

    def close(self):
        pass


class StubGateway:
    """STUDY is the caller's (Patient/p1); any other study is not."""

    def knows(self, pacs):
        return pacs == "main"

    def access(self, caller, pacs, uids):
        return {u: StudyAccess(u, u, "p1") for u in uids if u == STUDY}

    def _check(self, target):
        if target.study not in (None, STUDY):
            raise NotAllowed()

    def retrieve(self, caller, pacs, target, query, headers):
        self._check(target)
        return Answer()

    def metadata(self, caller, pacs, target):
        self._check(target)
        return [ROW]

    def search(self, caller, pacs, target, query):
        self._check(target)
        return [ROW]


@pytest.fixture
def gateway(tmp_path, issuer):  # noqa: F811 - the fixture imported above
    services = build_services(tmp_path, AUTH_ISSUER=issuer, AUTH_AUDIENCE=AUD)
    sink = ListSink()
    retrievals = RetrievalAggregator(sink, background=False)
    app = wiring.web_app(
        replace(services, gateway=StubGateway(), audit=sink, retrievals=retrievals)
    )
    yield app.test_client(), sink, retrievals, issuer
    services.close()


def get(client, path, bearer=None):
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return client.get(f"/dicomweb/main/{path}", headers=headers)


def test_many_frame_reads_of_one_study_are_one_event_with_their_count(gateway):
    client, sink, retrievals, iss = gateway
    user = token(iss, azp="dicom-fhir-viewer")
    for frame in range(1, 6):
        path = f"studies/{STUDY}/series/1.2.3/instances/1.2.4/frames/{frame}"
        assert get(client, path, user).status_code == 200
    assert len(sink.events) == 1  # the first read, at once
    retrievals.close()
    first, last = sink.events
    assert last["id"] == first["id"] and requests_of(last) == 5
    assert last["action"] == "R" and last["entity"][0]["what"] == {"reference": "Patient/p1"}
    assert last["agent"][0]["who"]["identifier"]["value"] == "u1"


def test_a_search_is_recorded_for_each_study_it_answered_with(gateway):
    client, sink, retrievals, iss = gateway
    assert get(client, "studies?PatientID=X", token(iss)).status_code == 200
    [event] = sink.events
    assert event["action"] == "E" and event["subtype"][0]["code"] == "search-type"
    assert event["entity"][0]["what"] == {"reference": "Patient/p1"}


def test_a_study_the_caller_may_not_see_is_a_failure_event_without_its_patient(gateway):
    client, sink, _, iss = gateway
    assert get(client, f"studies/{OTHER}/metadata", token(iss)).status_code == 404
    [event] = sink.events
    assert event["outcome"] == "4" and all("reference" not in e["what"] for e in event["entity"])


@pytest.mark.parametrize("bearer", [None, "not-a-token"])
def test_no_or_an_invalid_token_is_a_refusal(gateway, bearer):
    client, sink, _, _ = gateway
    assert get(client, f"studies/{STUDY}", bearer).status_code == 401
    [event] = sink.events
    assert event["outcomeDesc"] == "refused: DICOMweb request (HTTP 401)"
    assert STUDY not in json.dumps(event)
