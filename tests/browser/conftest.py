"""Headless Chromium for the browser tests: Debian's chromium and chromedriver driven by
Selenium with an explicit Service, so nothing is downloaded (no Selenium Manager, no browser
build of its own).

``browser(width, height)`` opens a fresh profile at that window size; ``screenshot`` saves
into docs/screenshots/; ``distinct_pixel_values`` decodes an ``<img>`` or ``<canvas>`` in the
page and counts its distinct RGBA values (a blank or failed image has one); ``sign_in``
goes through a page's sign-in button and Keycloak's real login form. ``world``: the real
stack with the tests' patients, a dead letter and an identity conflict (tests/browser/world.py).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.browser.world import World

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
#: What works here as root with no GPU and no network but loopback.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
DESKTOP = (1280, 800)
PHONE = (390, 844)
WAIT = 20  # seconds: a sign-in round trip, a study list, a frame, a lookup


@pytest.fixture(scope="package")
def world(stack, fhir_http, sample_data, tmp_path_factory) -> Iterator[World]:
    """The real stack, with the browser tests' patients and sidecar (tests/browser/world.py);
    the stack's own sidecar, if it ran, runs again afterwards."""
    _chromium_or_skip()
    import os

    port = int(os.environ.get("STACK_SIDECAR_PORT", "8090"))
    password = (stack.data_dir / "keycloak-demo-password").read_text().strip()
    made = World(stack, fhir_http, port, stack.data_dir / "browser-tests", password)
    try:
        yield made.make()
    finally:
        made.close()


def _chromium_or_skip() -> None:
    pytest.importorskip("selenium", reason="selenium is in the test extra: pip install '.[test]'")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install both)")


@pytest.fixture
def browser(tmp_path_factory) -> Iterator[Callable[..., object]]:
    """A factory of headless Chromium sessions, each with a new empty profile (no shared
    cookies or storage: two users never see each other's sign-in); all quit at teardown."""
    _chromium_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers = []

    def open_browser(width: int = DESKTOP[0], height: int = DESKTOP[1]):
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        drivers.append(driver)
        # the page's viewport is what a test means: --window-size sets the outer window
        # (here no narrower than 500 pixels, with 143 of window frame even when headless)
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500},
        )
        return driver

    yield open_browser
    for driver in drivers:
        driver.quit()


def screenshot(driver, name: str) -> Path:
    """The visible viewport as docs/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


#: Decodes the element's image into a canvas of its natural size and counts distinct RGBA
#: values. Blob and same-origin images leave the canvas readable.
_COUNT_PIXELS = """
const [element, done] = arguments;
(async () => {
  let canvas = element;
  if (element instanceof HTMLImageElement) {
    await element.decode();
    canvas = document.createElement('canvas');
    canvas.width = element.naturalWidth;
    canvas.height = element.naturalHeight;
    canvas.getContext('2d').drawImage(element, 0, 0);
  }
  const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
  const seen = new Set();
  const words = new Uint32Array(data.buffer, data.byteOffset, data.byteLength / 4);
  for (const word of words) seen.add(word);
  return seen.size;
})().then(done, (error) => done(-1));
"""


def distinct_pixel_values(driver, element) -> int:
    """How many distinct RGBA values the decoded ``<img>``/``<canvas>`` has (-1: it could
    not be decoded)."""
    return driver.execute_async_script(_COUNT_PIXELS, element)


def browser_problems(driver) -> list[str]:
    """Errors the page logged (CSP violations, failed scripts), for a test to assert none."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


# -- driving pages --------------------------------------------------------------------------


def wait(driver, condition, timeout=WAIT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def first(driver, selector, timeout=WAIT):
    return wait(driver, lambda d: (css(d, selector) or [None])[0], timeout)


def button(driver, text):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.XPATH, f"//button[normalize-space(.)='{text}']")


def sign_in(driver, page_url: str, issuer: str, label: str, user: str) -> dict:
    """Open the page, press its sign-in button ``label``, fill in Keycloak's login form as
    ``user`` (``username:password``); the access token's claims once the page is back."""
    username, password = user.split(":", 1)
    driver.get(page_url)
    first(driver, ".signin")
    button(driver, label).click()
    wait(driver, lambda d: d.current_url.startswith(issuer))
    first(driver, "#username").send_keys(username)
    first(driver, "#password").send_keys(password)
    first(driver, "#kc-login").click()
    wait(driver, lambda d: d.current_url.startswith(page_url) or css(d, "[name=accept]"))
    if not driver.current_url.startswith(page_url):
        css(driver, "[name=accept]")[0].click()  # a consent screen, where the realm asks one
    wait(driver, lambda d: d.current_url.startswith(page_url) and css(d, "#account button"))
    return claims(access_token(driver))


def access_token(driver) -> str:
    return driver.execute_script(
        "const key = JSON.parse(sessionStorage.getItem('SMART_KEY'));"
        "return JSON.parse(sessionStorage.getItem(key)).tokenResponse.access_token;"
    )


def claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def full_page_screenshot(driver, name: str, width: int) -> Path:
    """The whole page, not the viewport: the viewport made as tall as the page for the
    picture, then set back."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    viewport = driver.execute_script("return window.innerHeight")
    metrics = {"width": width, "deviceScaleFactor": 1, "mobile": width < 500}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": height})
    try:
        return screenshot(driver, name)
    finally:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride", {**metrics, "height": viewport}
        )
