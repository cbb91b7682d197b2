"""Headless Chromium: load the page, run an example, and check that every Overview panel shows an image.

Saves `docs/screenshot.png` for the README. Needs Debian's `chromium` and `chromium-driver` (`apt-get install -y
chromium chromium-driver`) and `selenium`; without them the test is skipped, except under CI (env CI set), where a
missing browser is a failure. The browser is sandboxed from the network: only the app on 127.0.0.1 is loaded.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "screenshot.png"
METHODS = ("transfg", "rams_trans", "tasn")
TIMEOUT_S = 90

pytestmark = pytest.mark.browser


def _find(*names: str) -> str | None:
    for n in names:
        path = shutil.which(n)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    chromium = _find("chromium", "chromium-browser", "google-chrome")
    driver_bin = _find("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    missing = [what for what, ok in (("chromium", chromium), ("chromedriver", driver_bin), ("selenium", webdriver))
               if not ok]
    if missing:
        msg = f"headless browser test needs {', '.join(missing)} (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--window-size=1400,1000", "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(driver_bin))
    driver.set_page_load_timeout(TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def url():
    import app

    _, local_url, _ = app.launch(app.demo, host="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        yield local_url
    finally:
        app.demo.close()


def _wait(driver, script: str, what: str, timeout: float = TIMEOUT_S):
    """Poll a JS expression until it is truthy (auto-retrying assertion on the visible DOM)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _loaded_images(selector: str) -> str:
    return (f"return Array.from(document.querySelectorAll({selector!r}))"
            ".filter(i => i.complete && i.naturalWidth > 0).length")


def test_example_fills_every_overview_panel(browser, url) -> None:
    browser.get(url)
    _wait(browser, "return document.querySelectorAll('button.gallery-item').length", "the examples")
    examples = browser.find_elements("css selector", "button.gallery-item")
    assert len(examples) >= 6
    examples[0].click()  # the first bird: fills the inputs, then the app explains it
    for m in METHODS:
        _wait(browser, _loaded_images(f"#ov-{m} img"), f"the {m} signature view")
        _wait(browser, _loaded_images(f"#ov-gal-{m} img"), f"the {m} panels")
        _wait(browser, f"return document.querySelector('#ov-top-{m} .js-plotly-plot .bars, #ov-top-{m} .main-svg')",
              f"the {m} top-5 chart")
    banner = browser.find_element("css selector", ".fg-banner").text
    assert all(t in banner for t in ("TransFG", "RAMS-Trans", "TASN"))
    sizes = browser.execute_script(
        "return ['transfg','rams_trans','tasn'].map(m => document.querySelector('#ov-' + m + ' img').naturalWidth)")
    assert all(s >= 256 for s in sizes), sizes

    # Screenshot for the README: from the top to the end of the Overview row, once the layout stops moving.
    bottom_js = ("return Math.ceil(Math.max(...['transfg','rams_trans','tasn'].map(m => "
                 "document.querySelector('#ov-gal-' + m).closest('.column').getBoundingClientRect().bottom))"
                 " + window.scrollY)")
    bottom, previous = browser.execute_script(bottom_js), -1
    while bottom != previous:
        time.sleep(1.0)
        previous, bottom = bottom, browser.execute_script(bottom_js)
    width = browser.execute_script("return document.documentElement.scrollWidth")
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": min(bottom + 24, 4000), "scale": 1}})
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
    shot = np.asarray(Image.open(SCREENSHOT).convert("RGB"))
    assert shot.shape[1] >= 1200
    assert shot.std() > 10
