"""Headless Chromium for the viewer's browser tests: Debian's chromium and chromedriver
driven by Selenium with an explicit Service, so nothing is downloaded (no Selenium Manager,
no browser build of its own).

``browser(width, height)`` opens a fresh profile at that window size; ``screenshot`` saves
into docs/screenshots/; ``distinct_pixel_values`` decodes an ``<img>`` or ``<canvas>`` in the
page and counts its distinct RGBA values (a blank or failed image has one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

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
