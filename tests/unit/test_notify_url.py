"""`dicom-fhir serve --bind`: the Subscription's endpoint follows where the sidecar listens."""

from __future__ import annotations

import pytest

from sidecar.settings import load_settings
from sidecar.wiring.server import with_notify_url_of


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("127.0.0.1:61090", "http://127.0.0.1:61090/notify"),
        ("10.1.2.3:8090", "http://10.1.2.3:8090/notify"),
        # a wildcard names no host HAPI could call: this host's loopback, at the bound port
        ("0.0.0.0:9000", "http://127.0.0.1:9000/notify"),
        ("[::]:9000", "http://127.0.0.1:9000/notify"),
        (":9000", "http://127.0.0.1:9000/notify"),
    ],
)
def test_the_notify_url_follows_the_bind_address(bind: str, expected: str) -> None:
    assert with_notify_url_of(load_settings({}), bind).sync.notify_url == expected


def test_an_explicit_notify_url_wins() -> None:
    settings = load_settings({"SIDECAR_NOTIFY_URL": "https://imaging.example.org/notify"})
    assert with_notify_url_of(settings, "0.0.0.0:9000").sync.notify_url == (
        "https://imaging.example.org/notify"
    )
