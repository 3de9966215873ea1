"""DicomwebPacs against a fake DICOMweb server: the query strings it sends, paging, errors."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from werkzeug import Response

from sidecar.adapters.dicomweb import DicomwebPacs
from sidecar.core import qido
from sidecar.core.outcome import PacsTimeout, PacsUnavailable
from sidecar.core.qido import StudyCriteria
from sidecar.settings import PacsSettings, QidoSettings
from tests.unit.fake_dicomweb import FakeDicomWeb, instance_row, study_row

FIELDS = "&".join(f"includefield={f}" for f in qido.STUDY_FIELDS)


def client_for(
    url: str, *, timeout: float = 1.0, page_size: int = 10, **qido_values
) -> DicomwebPacs:
    return DicomwebPacs(
        PacsSettings(name="main", url=url),
        QidoSettings(
            timeout_seconds=timeout,
            connect_timeout_seconds=1.0,
            retries=1,
            concurrency=2,
            page_size=page_size,
            **qido_values,
        ),
    )


@pytest.fixture
def pacs(httpserver):
    return FakeDicomWeb(httpserver).install()


def test_the_study_query_string_is_exact_and_unencoded(pacs):
    client = client_for(pacs.url)
    client.search_patient_studies("P-1.a_b~c", "HOSP-A", StudyCriteria())
    assert pacs.query_strings() == [f"00100020=P-1.a_b~c&00100021=HOSP-A&{FIELDS}&limit=10"]


def test_characters_that_need_encoding_go_out_as_wildcards(pacs):
    client = client_for(pacs.url)
    client.search_patient_studies("A B^1", None, StudyCriteria())
    client.search_patient_studies("山田12", None, StudyCriteria())
    assert [q.split("&")[0] for q in pacs.query_strings()] == ["00100020=A?B?1", "00100020=*12"]


def test_only_exact_matches_are_kept_from_a_loose_pacs(pacs):
    pacs.studies = [
        study_row("12", "1.1", "HOSP-A"),
        study_row("123", "1.2", "HOSP-A"),  # prefix
        study_row("12", "1.3", "HOSP-B"),  # other issuer
        study_row("12", "1.4"),  # no issuer at all
        study_row("12 ", "1.5", "HOSP-A"),  # DICOM padding: the same PatientID
        study_row("x12", "1.6", "HOSP-A"),
    ]
    found = client_for(pacs.url).search_patient_studies("12", "HOSP-A", StudyCriteria())
    assert [qido.first_value(r, qido.STUDY_INSTANCE_UID) for r in found.records] == ["1.1", "1.5"]
    assert found.dropped == 4


def test_paging_counts_the_rows_the_pacs_returned_not_the_rows_kept(pacs):
    pacs.studies = [study_row("other", f"2.{i}") for i in range(7)]
    pacs.studies += [study_row("12", f"1.{i}") for i in range(5)]
    found = client_for(pacs.url, page_size=4).search_patient_studies("12", None, StudyCriteria())
    offsets = [q.rpartition("offset=")[2] if "offset=" in q else "0" for q in pacs.query_strings()]
    assert offsets == ["0", "4", "8", "12"]  # 12 rows in full pages: one empty page ends it
    assert len(found.records) == 5 and found.dropped == 7


def test_a_capped_page_with_warning_299_is_followed(pacs):
    pacs.cap = 3  # the PACS sends 3 rows although 10 were asked for, and says there are more
    pacs.studies = [study_row("12", f"1.{i}") for i in range(8)]
    found = client_for(pacs.url).search_patient_studies("12", None, StudyCriteria())
    assert len(found.records) == 8 and found.requests == 3


def test_instance_level_pages_and_honours_warning_299(pacs):
    pacs.cap = 2
    pacs.instances["1.1"] = [instance_row("1.1", "1.1.1", f"1.1.1.{i}") for i in range(5)]
    contents = client_for(pacs.url).study_contents(["1.1"], "instance")
    assert len(contents["1.1"]) == 5
    paths = [path for path, _ in pacs.queries]
    assert paths == ["/dicom-web/studies/1.1/instances"] * 3


def test_a_pacs_that_ignores_offset_ends_in_a_clear_error(pacs):
    pacs.ignore_offset = True
    pacs.studies = [study_row("12", f"1.{i}") for i in range(10)]
    client = client_for(pacs.url, page_size=2, max_pages=5)
    with pytest.raises(PacsUnavailable, match="more than 5 pages"):
        client.search_patient_studies("12", None, StudyCriteria())
    assert len(pacs.queries) == 5


def test_find_study_asks_for_the_issuer(pacs):
    pacs.studies = [study_row("12", "1.1", "HOSP-A")]
    (record,) = client_for(pacs.url).find_study("1.1")
    assert qido.first_value(record, qido.ISSUER_OF_PATIENT_ID) == "HOSP-A"
    (query,) = pacs.query_strings()
    assert query.startswith("0020000D=1.1&includefield=00100021&")


def test_find_studies_asks_in_uid_lists_of_fifty(pacs):
    pacs.studies = [study_row("12", f"1.{i}") for i in range(120)]
    found = client_for(pacs.url, page_size=500).find_studies([f"1.{i}" for i in range(120)])
    assert len(found) == 120
    queries = pacs.query_strings()
    assert len(queries) == 3
    assert queries[0].startswith("0020000D=" + ",".join(f"1.{i}" for i in range(50)) + "&")


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [(503, PacsUnavailable, 502), (500, PacsUnavailable, 502), (504, PacsTimeout, 504)],
)
def test_error_statuses(pacs, status, error, code):
    pacs.status = status
    with pytest.raises(error) as err:
        client_for(pacs.url).search_patient_studies("12", None, StudyCriteria())
    assert err.value.status == code


def test_a_503_is_retried_once(httpserver):
    httpserver.expect_ordered_request("/dicom-web/studies").respond_with_data("", status=503)
    httpserver.expect_ordered_request("/dicom-web/studies").respond_with_json([])
    found = client_for(httpserver.url_for("/dicom-web")).search_patient_studies(
        "12", None, StudyCriteria()
    )
    assert found.records == [] and len(httpserver.log) == 2


def test_an_answer_that_is_not_json_is_502(httpserver):
    httpserver.expect_request("/dicom-web/studies").respond_with_response(
        Response("<html>proxy error</html>", content_type="text/html")
    )
    with pytest.raises(PacsUnavailable, match="unusable") as err:
        client_for(httpserver.url_for("/dicom-web")).search_patient_studies(
            "12", None, StudyCriteria()
        )
    assert err.value.status == 502


def test_refused_connection_fails_fast_with_502():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens
    client = client_for(f"http://127.0.0.1:{port}/dicom-web")
    with pytest.raises(PacsUnavailable) as err:
        client.search_patient_studies("12", None, StudyCriteria())
    assert err.value.status == 502 and not isinstance(err.value, PacsTimeout)


def test_silent_pacs_times_out_with_504():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    client = client_for(f"http://127.0.0.1:{server.getsockname()[1]}/dicom-web", timeout=0.5)
    with pytest.raises(PacsTimeout) as err:
        client.ping()
    assert err.value.status == 504
    server.close()


def test_time_is_not_spent_in_dicomweb_clients_own_retries():
    """Its default (5 attempts, exponential) took ~30 s on a refused connection."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(PacsUnavailable):
        client_for(f"http://127.0.0.1:{port}/dicom-web").ping()
    assert time.monotonic() - started < 5


def _dripping_server() -> socket.socket:
    """Answers every request with headers at once, then one body byte every 0.2 s."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def drip(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\n"
                b"Content-Length: 100\r\n\r\n["
            )
            for _ in range(99):
                time.sleep(0.2)
                try:
                    conn.sendall(b" ")
                except OSError:
                    return

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server


@pytest.mark.parametrize("level", ["study", "series", "ping"])
def test_a_pacs_that_drips_its_answer_times_out_with_504_whole(level):
    """The read timeout restarts with every byte; the answer as a whole must be in within
    SIDECAR_PACS_TIMEOUT_SECONDS (here 1 s, while the drip would take 20 s)."""
    server = _dripping_server()
    client = client_for(f"http://127.0.0.1:{server.getsockname()[1]}/dicom-web", timeout=1.0)
    call = {
        "study": lambda: client.search_patient_studies("12", None, StudyCriteria()),
        "series": lambda: client.study_contents({"1.2.3": study_row("12", "1.2.3")}, "series"),
        "ping": client.ping,
    }[level]
    started = time.monotonic()
    with pytest.raises(PacsTimeout) as err:
        call()
    assert err.value.status == 504 and time.monotonic() - started < 5
    server.close()


def test_a_compressed_answer_is_read_whole_and_decoded(httpserver):
    import gzip
    import json

    rows = [study_row("12", "1.2.3")]
    httpserver.expect_request("/dicom-web/studies").respond_with_response(
        Response(
            gzip.compress(json.dumps(rows).encode()),
            headers={"Content-Encoding": "gzip"},
            content_type="application/dicom+json",
        )
    )
    found = client_for(httpserver.url_for("/dicom-web")).search_patient_studies(
        "12", None, StudyCriteria()
    )
    assert [qido.first_value(r, qido.STUDY_INSTANCE_UID) for r in found.records] == ["1.2.3"]
