"""PacsClient error translation and timing against local sockets (no PACS needed)."""

import socket
import threading
import time

import pytest

from sidecar.outcome import PacsTimeout, PacsUnavailable
from sidecar.pacs import PacsClient
from sidecar.qido import StudyCriteria
from sidecar.settings import Settings


def client_for(url: str, timeout: float = 1.0) -> PacsClient:
    settings = Settings.from_env({"SIDECAR_PACS_MAIN_URL": url})
    return PacsClient(
        settings.pacs[0],
        timeout=timeout,
        connect_timeout=1.0,
        retries=1,
        concurrency=2,
        page_size=10,
    )


def test_refused_connection_fails_fast_with_502():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens
    client = client_for(f"http://127.0.0.1:{port}/dicom-web")
    started = time.monotonic()
    with pytest.raises(PacsUnavailable) as err:
        client.search_patient_studies("12", None, StudyCriteria())
    assert err.value.status == 502 and not isinstance(err.value, PacsTimeout)
    assert time.monotonic() - started < 2  # not dicomweb-client's ~30 s default retry


def test_silent_pacs_times_out_with_504_within_the_timeout():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    client = client_for(f"http://127.0.0.1:{server.getsockname()[1]}/dicom-web", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(PacsTimeout) as err:
        client.ping()
    assert err.value.status == 504
    assert time.monotonic() - started < 2.5  # read timeouts are not retried
    server.close()
