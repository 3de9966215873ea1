"""The imaging gateway's HTTP manners (sidecar/entry/web/gateway.py, app.py): what a PACS's
own errors become, HEAD, OPTIONS, and the headers every answer carries. A stub gateway
answers as a PACS would; the real blueprint and app; a fake JWKS for the tokens."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sidecar import wiring
from tests.unit.services import build_services
from tests.unit.test_gateway_audit import STUDY, StubGateway
from tests.unit.test_tokens import AUD, issuer, token  # noqa: F401 - fixture

ORTHANC_ERROR = b'{"HttpError": "Not Found", "OrthancError": "Unknown resource", "Uri": "/x"}'


class PacsAnswer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body, self.closed = status, headers, body, False

    def chunks(self):
        yield self.body

    def close(self):
        self.closed = True


class Pacs(StubGateway):
    """Answers every retrieval with ``answer``."""

    answer: PacsAnswer

    def retrieve(self, caller, pacs, target, query, headers):
        self._check(target)
        return self.answer


@pytest.fixture
def world(tmp_path, issuer):  # noqa: F811 - the fixture imported above
    services = build_services(tmp_path, AUTH_ISSUER=issuer, AUTH_AUDIENCE=AUD)
    pacs = Pacs()
    app = wiring.web_app(replace(services, gateway=pacs))
    yield app.test_client(), pacs, {"Authorization": f"Bearer {token(issuer)}"}
    services.close()


FRAME = f"/dicomweb/main/studies/{STUDY}/series/1.2.3/instances/1.2.4/frames/1"


@pytest.mark.parametrize(("status", "ours"), [(404, 404), (406, 406), (400, 400), (500, 502)])
def test_a_pacs_error_is_our_operation_outcome_not_the_pacs_body(world, status, ours):
    client, pacs, bearer = world
    pacs.answer = PacsAnswer(status, {"Content-Type": "text/html"}, ORTHANC_ERROR)
    answer = client.get(FRAME, headers=bearer)
    assert answer.status_code == ours
    assert answer.json["resourceType"] == "OperationOutcome"
    assert b"Orthanc" not in answer.data and b"/x" not in answer.data
    assert pacs.answer.closed


def test_a_range_the_pacs_cannot_satisfy_passes_through(world):
    client, pacs, bearer = world
    pacs.answer = PacsAnswer(416, {"Content-Range": "bytes */10"}, b"")
    answer = client.get(FRAME, headers={**bearer, "Range": "bytes=20-30"})
    assert answer.status_code == 416 and answer.headers["Content-Range"] == "bytes */10"


def test_head_of_a_streamed_answer_claims_no_length_it_does_not_know(world):
    client, pacs, bearer = world
    pacs.answer = PacsAnswer(200, {"Content-Type": "multipart/related"}, b"x" * 100)
    answer = client.head(FRAME, headers=bearer)
    assert answer.status_code == 200 and "Content-Length" not in answer.headers
    pacs.answer = PacsAnswer(200, {"Content-Length": "100"}, b"x" * 100)
    assert client.head(FRAME, headers=bearer).headers["Content-Length"] == "100"


def test_options_is_not_an_anonymous_200(world):
    client, _, _ = world
    answer = client.options(FRAME)
    assert answer.status_code == 405 and "GET" in answer.headers["Allow"]


@pytest.mark.parametrize("bearer", [False, True])
def test_every_answer_is_nosniff_and_errors_are_never_cached(world, bearer):
    client, pacs, headers = world
    pacs.answer = PacsAnswer(200, {"Content-Type": "application/dicom"}, b"DICM")
    answer = client.get(
        f"/dicomweb/main/studies/{STUDY}/nothing", headers=headers if bearer else {}
    )
    assert answer.status_code in (401, 404)
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert (
        "no-cache" in answer.headers["Cache-Control"]
        or "no-store" in answer.headers["Cache-Control"]
    )


@pytest.mark.parametrize(
    ("given", "kept"),
    [("abc-123.x", True), ("Secret^Name 1970-01-01", False), ("x" * 65, False), ("", False)],
)
def test_a_request_id_is_kept_only_when_it_is_an_id(world, given, kept):
    client, _, _ = world
    answer = client.get("/livez", headers={"X-Request-Id": given})
    assert (answer.headers["X-Request-Id"] == given) is kept
