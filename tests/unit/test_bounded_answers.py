"""Issue 18 on the adapters: bounded answers, renewed tokens, credentials kept home.

Each test runs the real adapter against a fake HTTP server (pytest-httpserver) that is as
loose as a real one could be: it compresses what it likes, answers 401 for an expired
token, links its pages wherever it wants and redirects.
"""

from __future__ import annotations

import gzip
import json

import pytest
from werkzeug import Request, Response

from sidecar.adapters.dicomweb import DicomwebPacs
from sidecar.adapters.fhir_store import FhirStore
from sidecar.core.outcome import FhirUnavailable, PacsUnavailable
from sidecar.core.qido import StudyCriteria
from sidecar.settings import FhirSettings, HttpAuth, PacsSettings, QidoSettings
from tests.unit.fake_dicomweb import study_row

MiB = 1024 * 1024


def pacs_at(url: str, **values) -> DicomwebPacs:
    return DicomwebPacs(
        PacsSettings(name="main", url=url, auth=values.pop("auth", HttpAuth())),
        QidoSettings(timeout_seconds=5, retries=0, **values),
    )


def test_a_gzip_bomb_stops_at_the_limit_not_in_memory(httpserver):
    """20 KB on the wire, 20 MiB once decoded: the answer is refused at 1 MiB."""
    bomb = gzip.compress(b"[" + b" " * (20 * MiB) + b"]", compresslevel=9)
    assert len(bomb) < 64 * 1024
    httpserver.expect_request("/dicom-web/studies").respond_with_data(
        bomb, headers={"Content-Encoding": "gzip"}, content_type="application/dicom+json"
    )
    pacs = pacs_at(httpserver.url_for("/dicom-web"), max_response_bytes=MiB)
    with pytest.raises(PacsUnavailable, match="SIDECAR_PACS_MAX_RESPONSE_BYTES"):
        pacs.search_patient_studies("P1", None, StudyCriteria())


def test_a_compressed_answer_under_the_limit_is_read(httpserver):
    rows = [study_row("P1", "1.2.3")]
    httpserver.expect_request("/dicom-web/studies").respond_with_data(
        gzip.compress(json.dumps(rows).encode()),
        headers={"Content-Encoding": "gzip"},
        content_type="application/dicom+json",
    )
    found = pacs_at(httpserver.url_for("/dicom-web")).search_patient_studies(
        "P1", None, StudyCriteria()
    )
    assert len(found.records) == 1


def test_an_expired_pacs_token_is_renewed_once_and_the_query_answers(httpserver):
    """The PACS answers 401 to the token it issued first (expired early, revoked): the
    adapter fetches a new one and asks again. The first wave's hook crashed here
    (AttributeError on a buffered body) and syncs went to the dead letters."""
    issued = []

    def token(request: Request) -> Response:
        issued.append(f"token-{len(issued) + 1}")
        body = {"access_token": issued[-1], "token_type": "Bearer", "expires_in": 3600}
        return Response(json.dumps(body), content_type="application/json")

    def studies(request: Request) -> Response:
        if request.headers.get("Authorization") != "Bearer token-2":
            return Response("expired", status=401)
        return Response(json.dumps([study_row("P1", "1.2.3")]), content_type="application/json")

    httpserver.expect_request("/token", method="POST").respond_with_handler(token)
    httpserver.expect_request("/dicom-web/studies").respond_with_handler(studies)
    auth = HttpAuth(
        mode="oauth2",
        token_url=httpserver.url_for("/token"),
        client_id="sidecar",
        client_secret="client-secret-0123456789",
    )
    pacs = pacs_at(httpserver.url_for("/dicom-web"), auth=auth)
    found = pacs.search_patient_studies("P1", None, StudyCriteria())
    assert len(found.records) == 1 and issued == ["token-1", "token-2"]


def fhir_at(httpserver, **values) -> FhirStore:
    return FhirStore(
        FhirSettings(base_url=httpserver.url_for("/fhir"), timeout_seconds=5, **values),
        auth=_Bearer("sidecar-token"),
    )


class _Bearer:
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


def _page(next_link: str | None, n: int) -> dict:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Patient", "id": f"p{n}"}}],
    }
    if next_link:
        bundle["link"] = [{"relation": "next", "url": next_link}]
    return bundle


def test_a_next_link_elsewhere_gets_no_request_and_no_token(httpserver):
    """fhirpy followed a link that merely contained the base URL and sent it our token."""
    evil = f"http://evil.invalid/x?u={httpserver.url_for('/fhir')}"
    httpserver.expect_request("/fhir/Patient").respond_with_json(_page(evil, 1))
    with pytest.raises(FhirUnavailable, match="outside its base URL"):
        fhir_at(httpserver).search_all("Patient", {})
    assert [r.path for r, _ in httpserver.log] == ["/fhir/Patient"]


def test_a_next_link_under_the_base_path_is_followed_on_our_own_host(httpserver):
    """A server behind a proxy names itself by another host: the page is asked of the
    configured base URL, with its query, and the token goes there only."""
    other_host = "http://hapi.internal:8080/fhir?_getpages=abc&_getpagesoffset=1"
    pages = iter([_page(other_host, 1), _page(None, 2)])
    httpserver.expect_request("/fhir/Patient").respond_with_handler(
        lambda r: Response(json.dumps(next(pages)), content_type="application/fhir+json")
    )
    httpserver.expect_request("/fhir").respond_with_handler(
        lambda r: Response(json.dumps(next(pages)), content_type="application/fhir+json")
    )
    found = fhir_at(httpserver).search_all("Patient", {})
    assert [p["id"] for p in found] == ["p1", "p2"]
    second = httpserver.log[1][0]
    assert second.args["_getpages"] == "abc" and second.headers["Authorization"]


def test_pages_stop_at_the_cap(httpserver):
    loop = httpserver.url_for("/fhir/Patient")  # a next link that never ends
    httpserver.expect_request("/fhir/Patient").respond_with_json(_page(loop, 1))
    with pytest.raises(FhirUnavailable, match="SIDECAR_FHIR_MAX_PAGES"):
        fhir_at(httpserver, max_pages=3).search_all("Patient", {})
    assert len(httpserver.log) == 3


def test_a_redirect_is_not_followed(httpserver):
    httpserver.expect_request("/fhir/Patient/p1").respond_with_data(
        "", status=302, headers={"Location": "http://evil.invalid/steal"}
    )
    with pytest.raises(FhirUnavailable, match="redirect"):
        fhir_at(httpserver).read("Patient", "p1")


def test_a_fhir_answer_larger_than_the_limit_is_refused(httpserver):
    huge = {"resourceType": "Patient", "id": "p1", "text": {"div": "x" * (2 * MiB)}}
    httpserver.expect_request("/fhir/Patient/p1").respond_with_json(huge)
    with pytest.raises(FhirUnavailable, match="SIDECAR_FHIR_MAX_RESPONSE_BYTES"):
        fhir_at(httpserver, max_response_bytes=MiB).read("Patient", "p1")
