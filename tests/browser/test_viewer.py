"""The viewer in headless Chromium.

The first tests need only Chromium and the viewer's blueprint (the sign-in page, keyboard,
an unreachable FHIR server). The rest are issue #20's acceptance on the REAL stack
(tests/browser/world.py): Keycloak's login form, HAPI enforcing the tokens, the sidecar's
imaging gateway in front of Orthanc; the demo patient A (the roster's P-1001, with its
imaging fetched), patient B (P-1002) and the realm's ``practitioner``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
import requests
from werkzeug.serving import make_server

from tests.browser.conftest import (
    DESKTOP,
    PHONE,
    access_token,
    browser_problems,
    distinct_pixel_values,
    screenshot,
)
from tests.browser.conftest import button as _button
from tests.browser.conftest import css as _css
from tests.browser.conftest import first as _first
from tests.browser.conftest import sign_in as _sign_in
from tests.browser.conftest import wait as _wait

pytestmark = pytest.mark.browser


# --------------------------------------------------------------------------------------
# the page alone: the real blueprint, a FHIR server that is not there


@pytest.fixture
def viewer_alone() -> Iterator[str]:
    """The viewer's blueprint on a free port; its FHIR server and issuer refuse connections
    (port 9), so the page is tested before any sign-in."""
    from flask import Flask

    from sidecar.entry.web.viewer import ViewerConfig, viewer_blueprint

    app = Flask("viewer-alone")
    config = ViewerConfig("http://127.0.0.1:9/fhir", "http://127.0.0.1:9/realms/dicom-fhir")
    app.register_blueprint(viewer_blueprint(config))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/viewer/"
    server.shutdown()


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_sign_in_page_says_what_it_is_at_both_sizes(browser, viewer_alone, size):
    driver = browser(*size)
    driver.get(viewer_alone)
    heading = _first(driver, ".signin h1")
    assert heading.text == "Imaging viewer"
    assert _button(driver, "Sign in as a patient").is_displayed()
    assert _button(driver, "Sign in as a clinician").is_displayed()
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth"
    )
    assert overflow <= 0, "the page scrolls sideways"
    screenshot(driver, f"viewer-signin-{'desktop' if size == DESKTOP else 'phone'}")
    assert browser_problems(driver) == []  # no CSP violation, no script error


def test_the_sign_in_page_is_keyboard_usable_with_visible_focus(browser, viewer_alone):
    from selenium.webdriver.common.keys import Keys

    driver = browser(*DESKTOP)
    driver.get(viewer_alone)
    _first(driver, ".signin h1")
    reached = []
    for _ in range(6):
        driver.switch_to.active_element.send_keys(Keys.TAB)
        active = driver.switch_to.active_element
        reached.append(active.text)
        if active.text == "Sign in as a patient":
            break
    assert reached[-1] == "Sign in as a patient", reached
    assert active.value_of_css_property("outline-style") != "none"


def test_an_unreachable_fhir_server_is_said_plainly(browser, viewer_alone):
    driver = browser(*DESKTOP)
    driver.get(viewer_alone)
    _first(driver, ".signin h1")
    _button(driver, "Sign in as a patient").click()
    message = _first(driver, ".signin .problem")
    assert "Sign-in could not start" in message.text


# --------------------------------------------------------------------------------------
# issue #20's acceptance, on the real stack


def sign_in(driver, world, role: str, user: str) -> dict:
    """Through the viewer's sign-in button and Keycloak's login form."""
    return _sign_in(
        driver, world.viewer_url, world.issuer, f"Sign in as a {role}", world.users[user]
    )


def shown_study_ids(driver) -> list[str]:
    _first(driver, ".study-list table.studies, .study-list .empty, .study-list .problem")
    return [row.get_attribute("data-study-id") for row in _css(driver, "tbody tr")]


def fhir_study_ids(world, token: str, patient: str) -> set[str]:
    r = requests.get(
        f"{world.stack.fhir_base}/ImagingStudy",
        params={"subject": f"Patient/{patient}", "_count": "500", "_elements": "subject"},
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/fhir+json",
            "Cache-Control": "no-cache",
        },
        timeout=30,
    )
    r.raise_for_status()
    resources = [e["resource"] for e in r.json().get("entry", [])]
    studies = [res for res in resources if res["resourceType"] == "ImagingStudy"]
    assert all(s["subject"]["reference"] == f"Patient/{patient}" for s in studies)
    return {s["id"] for s in studies}


def open_first_study(driver) -> None:
    _first(driver, ".row-link").click()
    _first(driver, ".series-card")
    # every thumbnail has loaded or said why not
    _wait(driver, lambda d: all(t.text != "Loading…" for t in _css(d, ".thumb")))


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_demo_patient_sees_exactly_their_studies(browser, world, size):
    driver = browser(*size)
    token_claims = sign_in(driver, world, "patient", "patient_a")
    patient = token_claims["patient"]
    assert patient == world.patients["a"]
    shown = shown_study_ids(driver)
    assert shown, "the demo patient has imaging"
    assert set(shown) == fhir_study_ids(world, access_token(driver), patient)
    screenshot(driver, f"viewer-studies-{'desktop' if size == DESKTOP else 'phone'}")
    assert browser_problems(driver) == []


def test_thumbnails_load_and_are_not_blank(browser, world):
    driver = browser(*DESKTOP)
    sign_in(driver, world, "patient", "patient_a")
    open_first_study(driver)
    thumbnails = _css(driver, ".thumb img")
    assert thumbnails, [t.text for t in _css(driver, ".thumb")]
    for image in thumbnails:
        assert distinct_pixel_values(driver, image) > 1
    screenshot(driver, "viewer-series-desktop")


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_page_through_the_frames_of_a_series(browser, world, size):
    from selenium.webdriver.common.keys import Keys

    driver = browser(*size)
    sign_in(driver, world, "patient", "patient_a")
    open_first_study(driver)
    cards = _css(driver, ".series-card")

    def images(card) -> int:
        found = re.search(r"(\d+) images?", card.text)
        return int(found.group(1)) if found else 0

    max(cards, key=images).click()
    frame = _first(driver, "img.frame[src]")
    caption = _first(driver, ".caption")
    total = int(re.search(r"Image 1 of (\d+)", caption.text).group(1))
    assert total > 1, "the demo patient's largest series has several images"
    assert distinct_pixel_values(driver, frame) > 1
    first_src = frame.get_attribute("src")
    driver.switch_to.active_element.send_keys(Keys.ARROW_RIGHT)
    _wait(driver, lambda d: f"Image 2 of {total}" in caption.text)
    _wait(driver, lambda d: frame.get_attribute("src") != first_src)
    assert distinct_pixel_values(driver, frame) > 1
    driver.switch_to.active_element.send_keys(Keys.END)
    _wait(driver, lambda d: f"Image {total} of {total}" in caption.text)
    _button(driver, "‹ Previous").click()
    _wait(driver, lambda d: f"Image {total - 1} of {total}" in caption.text)
    presets = _css(driver, ".preset")
    if len(presets) > 1:  # CT: the presets by number key
        driver.switch_to.active_element.send_keys("3")
        _wait(driver, lambda d: presets[2].get_attribute("aria-pressed") == "true")
        _wait(driver, lambda d: "window: Lung" in caption.text)
    _wait(driver, lambda d: distinct_pixel_values(d, frame) > 1)
    screenshot(driver, f"viewer-frames-{'desktop' if size == DESKTOP else 'phone'}")


def test_patient_b_does_not_see_patient_a(browser, world):
    a = browser(*DESKTOP)
    a_patient = sign_in(a, world, "patient", "patient_a")["patient"]
    a_studies = shown_study_ids(a)
    assert a_studies
    open_first_study(a)
    a_study_url = a.current_url.split("#", 1)[1]
    a_series_url = _css(a, ".series-card")[0].get_attribute("href").split("#", 1)[1]

    b = browser(*DESKTOP)  # a new profile: no shared session
    b_patient = sign_in(b, world, "patient", "patient_b")["patient"]
    assert b_patient == world.patients["b"] != a_patient
    b_studies = shown_study_ids(b)
    assert b_studies, "patient B has imaging of their own"
    assert not set(b_studies) & set(a_studies)
    # A's list: refused, or empty (a server may answer a search outside B's compartment
    # with no match rather than 403); either way none of A's studies
    b.get(f"{world.viewer_url}#/p/{a_patient}")
    assert shown_study_ids(b) == []
    for fragment in (a_study_url, a_series_url):
        b.get(f"{world.viewer_url}#{fragment}")
        problem = _first(b, ".problem")
        assert "Not available to you" in problem.text, fragment
        assert not _css(b, "img.frame[src], .thumb img")
    screenshot(b, "viewer-not-available-desktop")


def test_a_clinician_finds_the_demo_patient(browser, world):
    a = browser(*DESKTOP)
    a_patient = sign_in(a, world, "patient", "patient_a")["patient"]
    a_studies = set(shown_study_ids(a))

    driver = browser(*DESKTOP)
    token_claims = sign_in(driver, world, "clinician", "clinician")
    assert "patient" not in token_claims
    patient = requests.get(
        f"{world.stack.fhir_base}/Patient/{a_patient}",
        headers={"Authorization": f"Bearer {access_token(driver)}"},
        timeout=30,
    ).json()
    _first(driver, "#patient-query").send_keys(patient["name"][0]["family"] + "\n")
    _first(driver, f".patients a[href='#/p/{a_patient}']").click()
    assert set(shown_study_ids(driver)) == a_studies
    screenshot(driver, "viewer-clinician-desktop")
