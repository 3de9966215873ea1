"""The operator page (/admin/) in headless Chromium, on the REAL stack (tests/browser/world.py):
the realm's ``operator`` (role imaging-operator) signs in through Keycloak's login form, sees
the dead letter the world made, retries it and sees the studies arrive; the lookup explains a
study missing from FHIR because two Patients carry the same MRN; an account without the role
is told so. Then the same answers as scripts read them: JSON and ``$imaging-sync-status``.
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.browser.conftest import (
    DESKTOP,
    PHONE,
    browser_problems,
    button,
    css,
    first,
    full_page_screenshot,
    screenshot,
    sign_in,
    wait,
)

pytestmark = pytest.mark.browser
SYNC_WAIT = 90  # seconds: a retried sync of a few studies, followed by the page every 3 s


def operator_page(browser, world, size=DESKTOP, user="operator"):
    driver = browser(*size)
    sign_in(driver, world.admin_url, world.issuer, "Sign in as an operator", world.users[user])
    return driver


def row(driver, section: str, patient_id: str):
    return first(driver, f"#{section} tr[data-patient='{patient_id}']")


def study_of(world, role: str) -> str:
    """The StudyInstanceUID of one of a test Patient's studies in the PACS (the JSON API)."""
    answer = world.operator_get(f"lookup?patient={world.patients[role]}")
    return answer["studies"][0]["studyInstanceUid"]


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_overview_names_what_needs_an_operator_and_does_not_flicker(browser, world, size):
    from selenium.common.exceptions import StaleElementReferenceException

    driver = operator_page(browser, world, size)
    twin1, twin2 = world.patients["twin1"], world.patients["twin2"]
    conflict = row(driver, "conflicts", twin1)
    assert f"Patient/{twin2}" in conflict.text  # both Patients, by id
    assert "Needs attention" in first(driver, ".headline").text
    first(driver, "#triggers tbody tr")  # the triggers have run: last success, cursor, lag
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth"
    )
    assert overflow <= 0, "the page scrolls sideways"
    name = f"admin-overview-{'desktop' if size == DESKTOP else 'phone'}"
    full_page_screenshot(driver, name, size[0])
    # refreshed every 5 s: the time moves on, the unchanged rows stay the same elements
    updated = first(driver, ".updated").text
    wait(driver, lambda d: first(d, ".updated").text != updated, timeout=15)
    try:
        assert f"Patient/{twin2}" in conflict.text
    except StaleElementReferenceException:
        pytest.fail("an unchanged section was rebuilt (it would flicker)")
    assert browser_problems(driver) == []  # no CSP violation, no script error


def test_the_lookup_box_is_reached_with_the_keyboard(browser, world):
    from selenium.webdriver.common.keys import Keys

    driver = operator_page(browser, world)
    first(driver, "#lookup-query")
    for _ in range(15):
        driver.switch_to.active_element.send_keys(Keys.TAB)
        if driver.switch_to.active_element.get_attribute("id") == "lookup-query":
            break
    active = driver.switch_to.active_element
    assert active.get_attribute("id") == "lookup-query"
    assert active.value_of_css_property("outline-style") != "none"
    active.send_keys(f"Patient/{world.patients['a']}", Keys.ENTER)
    answer = first(driver, ".lookup-answer tr[data-state]")
    assert answer.get_attribute("data-state") == "up-to-date"


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_lookup_explains_a_study_missing_because_of_an_identity_conflict(browser, world, size):
    from selenium.webdriver.common.keys import Keys

    uid = study_of(world, "twin1")
    twin1, twin2 = world.patients["twin1"], world.patients["twin2"]
    driver = operator_page(browser, world, size)
    first(driver, "#lookup-query").send_keys(uid, Keys.ENTER)
    study = first(driver, f".lookup-answer tr[data-uid='{uid}']")
    assert study.get_attribute("data-state") == "identity-conflict"
    assert "Identity conflict" in study.find_element("css selector", ".badge").text
    why = study.find_element("css selector", ".why").text
    assert f"Patient/{twin1}" in why and f"Patient/{twin2}" in why
    fhir_cell = study.find_element("css selector", "td[data-label='In FHIR']").text
    assert "not there" in fhir_cell
    filed = first(driver, ".lookup-answer .facts-list").text
    assert f"Patient/{twin1}" in filed and f"Patient/{twin2}" in filed
    first(driver, "#lookup").location_once_scrolled_into_view  # noqa: B018 - scrolls
    screenshot(driver, f"admin-conflict-{'desktop' if size == DESKTOP else 'phone'}")


def test_the_operator_retries_the_dead_letter_and_sees_the_studies_arrive(browser, world):
    dead = world.patients["dead"]
    driver = operator_page(browser, world)
    letter = row(driver, "dead-letters", dead)
    assert "HTTP 502" in letter.text  # PACS main refused: said, with the attempt count
    before = world.operator_get(f"lookup?patient={dead}")
    assert before["studies"] and {s["state"] for s in before["studies"]} == {"sync-failed"}
    letter.find_element("css selector", "button").click()
    # the lookup opens on the Patient and follows its sync until the studies are in FHIR
    wait(
        driver,
        lambda d: (
            css(d, ".lookup-answer tr[data-state]")
            and all(
                r.get_attribute("data-state") == "up-to-date"
                for r in css(d, ".lookup-answer tr[data-state]")
            )
        ),
        timeout=SYNC_WAIT,
    )
    shown = {r.get_attribute("data-uid") for r in css(driver, ".lookup-answer tr[data-state]")}
    assert shown == {s["studyInstanceUid"] for s in before["studies"]}
    wait(driver, lambda d: not css(d, f"#dead-letters tr[data-patient='{dead}']"), timeout=15)
    stored = world.fhir.get(
        f"{world.stack.fhir_base}/ImagingStudy",
        params={"subject": f"Patient/{dead}", "_elements": "id"},
        headers={"Cache-Control": "no-cache"},
    ).json()
    assert stored.get("total", len(stored.get("entry", []))) == len(shown)
    screenshot(driver, "admin-retried-desktop")


def test_an_account_without_the_operator_role_is_told_so(browser, world):
    driver = operator_page(browser, world, user="clinician")
    message = first(driver, ".problem h2")
    assert message.text == "Your account has no operator role"
    assert button(driver, "Sign out").is_displayed()
    assert not css(driver, "#dead-letters")  # nothing of the queue is shown
    screenshot(driver, "admin-no-role-desktop")


def test_scripts_get_the_same_answers(world):
    base = world.sidecar_url
    twin1, twin2 = world.patients["twin1"], world.patients["twin2"]
    operation = f"{base}/fhir/Patient/{twin1}/$imaging-sync-status"
    assert requests.get(operation, timeout=30).status_code == 401
    clinician = {"Authorization": f"Bearer {world.stack.token('--user', 'practitioner')}"}
    refused = requests.get(operation, headers=clinician, timeout=30)
    assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"
    started = time.monotonic()
    answer = requests.get(operation, headers=world.operator_headers(), timeout=60)
    assert answer.status_code == 200, answer.text
    parameters = answer.json()
    assert parameters["resourceType"] == "Parameters"
    conflicts = [p for p in parameters["parameter"] if p["name"] == "conflict"]
    assert [c["part"][0]["valueReference"]["reference"] for c in conflicts] == [f"Patient/{twin2}"]
    studies = [p for p in parameters["parameter"] if p["name"] == "study"]
    assert studies and all(
        next(x["valueCode"] for x in s["part"] if x["name"] == "state") == "identity-conflict"
        for s in studies
    )
    assert time.monotonic() - started < 10
    assert "P-1005" not in answer.text  # the MRN is PHI: never in an answer
    lookup = world.operator_get(f"lookup?study={study_of(world, 'twin1')}")
    assert lookup["patients"] == [f"Patient/{twin1}", f"Patient/{twin2}"]
    assert "P-1005" not in str(lookup)
