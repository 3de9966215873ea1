"""The viewer in headless Chromium.

The first tests need only Chromium and the viewer's blueprint (the sign-in page, keyboard,
an unreachable FHIR server). The rest are the acceptance of issue #20 against the real
stack: Keycloak (realm dicom-fhir), HAPI enforcing the tokens, the sidecar's imaging
gateway; they skip, saying why, while the authorization server is not running.

The acceptance tests run twice: on the real stack (skipped, saying why, while its
authorization server is not running) and on the stand-in of tests/browser/stand_in.py. Stack
settings (environment, defaults for the local stack): VIEWER_URL, VIEWER_ISSUER,
VIEWER_FHIR_BASE_URL, and the demo users as ``username:password``: VIEWER_PATIENT_A (the
demo patient, who has imaging), VIEWER_PATIENT_B (another patient), VIEWER_CLINICIAN.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from werkzeug.serving import make_server

from tests.browser.conftest import (
    DESKTOP,
    PHONE,
    browser_problems,
    distinct_pixel_values,
    screenshot,
)

pytestmark = pytest.mark.browser

WAIT = 20  # seconds: a sign-in round trip, a study list, a frame


def _wait(driver, condition, timeout=WAIT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def _first(driver, selector, timeout=WAIT):
    return _wait(driver, lambda d: (_css(d, selector) or [None])[0], timeout)


def _button(driver, text):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.XPATH, f"//button[normalize-space(.)='{text}']")


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
# issue #20's acceptance: on the real stack, and on the stand-in (tests/browser/stand_in.py)
# so that the same tests run before the stack has its authorization server and gateway


@dataclass(frozen=True)
class Target:
    name: str  # "stack" or "stand-in": the prefix of its screenshots
    viewer_url: str
    issuer: str
    fhir_base_url: str
    users: dict[str, str]  # patient_a, patient_b, clinician -> "username:password"


def _real_stack() -> Target:
    """The local stack; environment variables where the realm's demo users differ."""
    return Target(
        "viewer",
        os.environ.get("VIEWER_URL", "http://127.0.0.1:8090/viewer/"),
        os.environ.get("VIEWER_ISSUER", "http://127.0.0.1:8180/realms/dicom-fhir"),
        os.environ.get("VIEWER_FHIR_BASE_URL", "http://127.0.0.1:8080/fhir"),
        {
            "patient_a": os.environ.get("VIEWER_PATIENT_A", "demo-patient:demo-patient"),
            "patient_b": os.environ.get("VIEWER_PATIENT_B", "patient-b:patient-b"),
            "clinician": os.environ.get("VIEWER_CLINICIAN", "demo-clinician:demo-clinician"),
        },
    )


def _missing(target: Target) -> str | None:
    try:
        discovery = f"{target.issuer}/.well-known/openid-configuration"
        requests.get(discovery, timeout=3).raise_for_status()
    except requests.RequestException:
        return f"the stack's authorization server is not running ({target.issuer})"
    try:
        requests.get(target.viewer_url, timeout=3).raise_for_status()
    except requests.RequestException:
        return f"the sidecar does not serve the viewer at {target.viewer_url}"
    return None


@pytest.fixture(scope="module", params=["stack", "stand-in"])
def target(request) -> Iterator[Target]:
    if request.param == "stack":
        stack = _real_stack()
        reason = _missing(stack)
        if reason:
            pytest.skip(reason)
        yield stack
        return
    from tests.browser.stand_in import StandIn

    stand_in = StandIn().start()
    yield Target(
        "stand-in",
        stand_in.viewer_url,
        stand_in.issuer,
        stand_in.fhir_base_url,
        {"patient_a": "anna:x", "patient_b": "bert:x", "clinician": "dana:x"},
    )
    stand_in.stop()


def sign_in(driver, target: Target, role: str, user: str) -> dict:
    """Through the viewer's sign-in button and Keycloak's login form; the access token's
    claims once the viewer shows its first screen."""
    username, password = target.users[user].split(":", 1)
    driver.get(target.viewer_url)
    _first(driver, ".signin")
    _button(driver, f"Sign in as a {role}").click()
    _wait(driver, lambda d: d.current_url.startswith(target.issuer))
    _first(driver, "#username").send_keys(username)
    _first(driver, "#password").send_keys(password)
    _first(driver, "#kc-login").click()
    back = target.viewer_url
    _wait(driver, lambda d: d.current_url.startswith(back) or _css(d, "[name=accept]"))
    if not driver.current_url.startswith(back):
        _css(driver, "[name=accept]")[0].click()  # a consent screen, where the realm asks one
    _wait(driver, lambda d: d.current_url.startswith(back) and _css(d, "#account button"))
    return claims(access_token(driver))


def access_token(driver) -> str:
    return driver.execute_script(
        "const key = JSON.parse(sessionStorage.getItem('SMART_KEY'));"
        "return JSON.parse(sessionStorage.getItem(key)).tokenResponse.access_token;"
    )


def claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def shown_study_ids(driver) -> list[str]:
    _first(driver, ".study-list table.studies, .study-list .empty, .study-list .problem")
    return [row.get_attribute("data-study-id") for row in _css(driver, "tbody tr")]


def fhir_study_ids(target: Target, token: str, patient: str) -> set[str]:
    r = requests.get(
        f"{target.fhir_base_url}/ImagingStudy",
        params={"subject": f"Patient/{patient}", "_count": "500", "_elements": "subject"},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"},
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
    _wait(
        driver,
        lambda d: all(t.text != "Loading…" for t in _css(d, ".thumb")),
    )


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_demo_patient_sees_exactly_their_studies(browser, target, size):
    driver = browser(*size)
    token_claims = sign_in(driver, target, "patient", "patient_a")
    patient = token_claims["patient"]
    shown = shown_study_ids(driver)
    assert shown, "the demo patient has imaging"
    assert set(shown) == fhir_study_ids(target, access_token(driver), patient)
    screenshot(driver, f"{target.name}-studies-{'desktop' if size == DESKTOP else 'phone'}")


def test_thumbnails_load_and_are_not_blank(browser, target):
    driver = browser(*DESKTOP)
    sign_in(driver, target, "patient", "patient_a")
    open_first_study(driver)
    thumbnails = _css(driver, ".thumb img")
    assert thumbnails, [t.text for t in _css(driver, ".thumb")]
    for image in thumbnails:
        assert distinct_pixel_values(driver, image) > 1
    screenshot(driver, f"{target.name}-series-desktop")


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_page_through_the_frames_of_a_series(browser, target, size):
    from selenium.webdriver.common.keys import Keys

    driver = browser(*size)
    sign_in(driver, target, "patient", "patient_a")
    open_first_study(driver)
    cards = _css(driver, ".series-card")

    def images(card) -> int:
        found = re.search(r"(\d+) images?", card.text)
        return int(found.group(1)) if found else 0

    max(cards, key=images).click()
    frame = _first(driver, "img.frame[src]")
    caption = _first(driver, ".caption")
    total = int(re.search(r"Image 1 of (\d+)", caption.text).group(1))
    assert distinct_pixel_values(driver, frame) > 1
    first_src = frame.get_attribute("src")
    if total > 1:
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
    screenshot(driver, f"{target.name}-frames-{'desktop' if size == DESKTOP else 'phone'}")


def test_patient_b_does_not_see_patient_a(browser, target):
    a = browser(*DESKTOP)
    a_patient = sign_in(a, target, "patient", "patient_a")["patient"]
    a_studies = shown_study_ids(a)
    assert a_studies
    open_first_study(a)
    a_study_url = a.current_url.split("#", 1)[1]
    a_series_url = _css(a, ".series-card")[0].get_attribute("href").split("#", 1)[1]

    b = browser(*DESKTOP)  # a new profile: no shared session
    b_patient = sign_in(b, target, "patient", "patient_b")["patient"]
    assert b_patient != a_patient
    assert not set(shown_study_ids(b)) & set(a_studies)
    # A's list: refused, or empty (a server may answer a search outside B's compartment
    # with no match rather than 403); either way none of A's studies
    b.get(f"{target.viewer_url}#/p/{a_patient}")
    assert shown_study_ids(b) == []
    for fragment in (a_study_url, a_series_url):
        b.get(f"{target.viewer_url}#{fragment}")
        problem = _first(b, ".problem")
        assert "Not available to you" in problem.text, fragment
        assert not _css(b, "img.frame[src], .thumb img")
    screenshot(b, f"{target.name}-not-available-desktop")


def test_a_clinician_finds_the_demo_patient(browser, target):
    a = browser(*DESKTOP)
    a_patient = sign_in(a, target, "patient", "patient_a")["patient"]
    a_studies = set(shown_study_ids(a))

    driver = browser(*DESKTOP)
    token_claims = sign_in(driver, target, "clinician", "clinician")
    assert "patient" not in token_claims
    patient = requests.get(
        f"{target.fhir_base_url}/Patient/{a_patient}",
        headers={"Authorization": f"Bearer {access_token(driver)}"},
        timeout=30,
    ).json()
    _first(driver, "#patient-query").send_keys(patient["name"][0]["family"] + "\n")
    _first(driver, f".patients a[href='#/p/{a_patient}']").click()
    assert set(shown_study_ids(driver)) == a_studies
    screenshot(driver, f"{target.name}-clinician-desktop")
