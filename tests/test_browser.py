"""Headless Chromium against the running app: what a class sees, at desktop (1400 px) and phone (400 px) width.

One test per problem the explorer once had (issues 15 and 21): stale panels after a switch, panels of an earlier image
after an error, the keyboard-driven layer slider, the Domain radio, cut gallery captions, the unshaded edge strip of
the TransFG overlay, tabs hidden on a phone; a click on a patch that did nothing, a signature caption that described
another panel, sanity panels each stretched to its own range, a ViT that needed its Overview column ticked, a
non-image upload that failed silently, unreadable Internals galleries on a phone.

Saves screenshots of every tab at both widths in a temporary folder, or, with $FGVIZ_SCREENSHOTS=<folder> (what
`python scripts/screenshots.py` sets to docs/), in <folder>/screenshots/ and the README's <folder>/screenshot.png: a
test run never rewrites a tracked file.

Needs Debian's `chromium` and `chromium-driver` (`apt-get install -y chromium chromium-driver`) and `selenium`;
without them the tests are skipped, except under CI (env CI set), where a missing browser is a failure. The browser
is sandboxed from the network: only the app on 127.0.0.1 is loaded.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from fgviz.explorer.layout import default_methods
from fgviz.methods import METHODS
from fgviz.viz.panels import Style

ROOT = Path(__file__).resolve().parents[1]
SHOTS_ENV = "FGVIZ_SCREENSHOTS"  # a folder for the screenshots (scripts/screenshots.py: docs/); unset: a temporary one
BIRD = ROOT / "assets" / "birds_1.jpg"
SHOWN = default_methods()
TABS = ("Overview", "Layers and heads", "Internals", "Faithfulness", "Export", "About")
TIMEOUT_S = 120

pytestmark = pytest.mark.browser


_SHOTS: list[Path] = []  # the screenshot folder of this run (`_shots_root`)


@pytest.fixture(scope="module", autouse=True)
def _screenshot_folder(tmp_path_factory):
    """$FGVIZ_SCREENSHOTS, else pytest's temporary folder for this run (never docs/ by default)."""
    _SHOTS[:] = [Path(os.environ.get(SHOTS_ENV) or tmp_path_factory.mktemp("screenshots"))]


def _shots_root() -> Path:
    return _SHOTS[0]


def _find(*names: str) -> str | None:
    return next((p for p in map(shutil.which, names) if p), None)


def _driver(phone: bool):
    chromium, driver_bin = _find("chromium", "chromium-browser", "google-chrome"), _find("chromedriver")
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
                "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    if phone:
        opts.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": 400, "height": 900,
                                                                           "pixelRatio": 1}})
    else:
        opts.add_argument("--window-size=1400,1000")
    driver = webdriver.Chrome(options=opts, service=Service(driver_bin))
    driver.set_page_load_timeout(TIMEOUT_S)
    return driver


@pytest.fixture(scope="module")
def served():
    import app

    demo = app.build_app()
    _, url, _ = app.launch(demo, host="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        yield url, demo.fgviz_ui
    finally:
        demo.close()


@pytest.fixture(scope="module")
def desktop(served):
    d = _driver(phone=False)
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture(scope="module")
def phone(served):
    d = _driver(phone=True)
    try:
        yield d
    finally:
        d.quit()


def _wait(driver, script: str, what: str, timeout: float = TIMEOUT_S):
    """Poll a JS expression until it is truthy (an auto-retrying assertion on the visible DOM)."""
    end = time.monotonic() + timeout
    value = None
    while time.monotonic() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last value {value!r})")


def _text(driver, selector: str) -> str:
    return driver.execute_script(f"const e = document.querySelector({selector!r}); return e ? e.innerText : ''")


def _loaded(selector: str) -> str:
    """How many of the images `selector` matches have loaded (lazy ones below the fold are asked to load now)."""
    return (f"return Array.from(document.querySelectorAll({selector!r}))"
            ".map(i => { if (i.loading === 'lazy') i.loading = 'eager'; return i; })"
            ".filter(i => i.complete && i.naturalWidth > 0).length")


def _idle(driver) -> None:
    """Wait until no request is pending (Gradio marks pending outputs with .pending / a progress bar)."""
    time.sleep(0.5)
    _wait(driver, "return !document.querySelector('.pending, .progress-bar, .eta-bar')", "the app to go idle")


def _open(driver, url: str) -> None:
    driver.get(url)
    _wait(driver, "return document.querySelectorAll('button.gallery-item').length >= 6", "the examples")


def _example(driver, index: int = 0) -> None:
    """Click an example (fills the image and the domain, then explains) and wait for every Overview column."""
    before = _text(driver, "#fg-status")
    driver.find_elements("css selector", "button.gallery-item")[index].click()
    _wait(driver, f"const t = document.querySelector('#fg-status').innerText; return t !== {before!r} && "
                  "t.includes('Image')", "the banner of the new image")
    for m in SHOWN:  # the src (a phone lazy-loads images below the fold)
        _wait(driver, f"const i = document.querySelector('#ov-{m} img'); return i && i.getAttribute('src')",
              f"the {m} signature view")
    _idle(driver)


def _tab(driver, label: str) -> None:
    buttons = [b for b in driver.find_elements("css selector", "button[role=tab]") if b.text.strip() == label]
    assert buttons, f"no visible tab {label!r}"
    buttons[0].click()
    time.sleep(0.5)


def _radio(driver, elem_id: str, label: str) -> None:
    driver.execute_script(f"Array.from(document.querySelectorAll('#{elem_id} label')).find(l => l.innerText.trim() "
                          f"=== {label!r}).click()")


def _toast(driver, text: str) -> str:
    return _wait(driver, "return Array.from(document.querySelectorAll('.toast-body, .toast-wrap'))"
                         f".map(t => t.innerText).find(t => t.includes({text!r}))", f"an error toast with {text!r}")


def _shot(driver, name: str) -> Path:
    """A JPEG of the whole page (up to 6000 px tall) in <screenshots>/screenshots/ (`_shots_root`), every image on it
    loaded (the galleries' lazy ones included)."""
    _wait(driver, "return Array.from(document.querySelectorAll('img[src]')).map(i => { if (i.loading === 'lazy') "
                  "i.loading = 'eager'; return i; }).every(i => i.complete)", "every image of the page", 60)
    time.sleep(1.0)
    width = driver.execute_script("return document.documentElement.scrollWidth")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "jpeg", "quality": 80, "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": min(height, 6000), "scale": 1}})
    folder = _shots_root() / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.jpg"
    path.write_bytes(base64.b64decode(shot["data"]))
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.std() > 10, f"{name}: a blank page"
    return path


def _image_at(driver, selector: str) -> np.ndarray:
    """The pixels of an image the page shows (fetched from its src, as the browser did)."""
    src = driver.execute_script(f"return document.querySelector({selector!r}).src")
    data = base64.b64decode(src.split(",", 1)[1]) if src.startswith("data:") else httpx.get(src, timeout=30).content
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# ---- desktop ----------------------------------------------------------------------------------------------------


def test_example_fills_every_overview_panel(desktop, served) -> None:
    url, _ = served
    _open(desktop, url)
    _example(desktop, 0)
    for m in SHOWN:
        _wait(desktop, _loaded(f"#ov-gal-{m} img"), f"the {m} panels")
        _wait(desktop, f"return document.querySelector('#ov-top-{m} .main-svg')", f"the {m} top-5 chart")
    status = _text(desktop, "#fg-status")
    assert all(t in status for t in ("TransFG", "RAMS-Trans", "TASN", "true class"))
    sizes = desktop.execute_script(f"return {list(SHOWN)!r}.map(m => document.querySelector('#ov-' + m + ' img')"
                                   ".naturalWidth)")
    assert all(s >= 384 for s in sizes), sizes
    bottom_js = (f"return Math.ceil(Math.max(...{list(SHOWN)!r}.map(m => document.querySelector('#ov-gal-' + m)"
                 ".closest('.column').getBoundingClientRect().bottom)) + window.scrollY)")
    bottom, previous = desktop.execute_script(bottom_js), -1
    while bottom != previous:  # the README screenshot: top of the page to the end of the Overview row
        time.sleep(1.0)
        previous, bottom = bottom, desktop.execute_script(bottom_js)
    width = desktop.execute_script("return document.documentElement.scrollWidth")
    shot = desktop.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": min(bottom + 24, 4000), "scale": 1}})
    (_shots_root() / "screenshot.png").write_bytes(base64.b64decode(shot["data"]))


def test_gallery_images_and_captions_are_whole(desktop, served) -> None:
    """Item 5: every panel whole in its box and its caption in full (the RAMS caption carries scale 2's answer)."""
    url, _ = served
    _open(desktop, url)
    _example(desktop, 0)
    _wait(desktop, _loaded("#ov-gal-rams_trans img"), "the RAMS-Trans panels")
    cut = desktop.execute_script("""
        const bad = [];
        for (const item of document.querySelectorAll('.fg-gallery .thumbnail-item')) {
          const box = item.getBoundingClientRect(), img = item.querySelector('img');
          const cap = item.querySelector('.caption-label');
          if (img) { const r = img.getBoundingClientRect();
            if (r.width < 2 || r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1
                || r.bottom > box.bottom + 1)
              bad.push('image ' + img.src.slice(-20)); }
          if (!cap || cap.offsetHeight === 0 || cap.scrollWidth > cap.clientWidth + 1
              || cap.scrollHeight > cap.clientHeight + 1)
            bad.push('caption ' + (cap ? cap.innerText.slice(0, 40) : 'missing'));
        }
        return bad;""")
    assert cut == []
    caps = desktop.execute_script("return Array.from(document.querySelectorAll('#ov-gal-rams_trans .caption-label'))"
                                  ".map(c => c.innerText)")
    assert any("scale 2 says" in c for c in caps), caps
    _shot(desktop, "desktop_overview")


def test_domain_radio_explains_with_the_other_models(desktop, served) -> None:
    """Item 7: the Domain radio re-explains at once; every caption names the new models."""
    url, _ = served
    _open(desktop, url)
    _example(desktop, 0)
    _radio(desktop, "domain", "cars")
    _wait(desktop, "return document.querySelector('#fg-status').innerText.includes('transfg-cars-demo')",
          "the banner to name the car models")
    _idle(desktop)
    for m in SHOWN:
        cap = _text(desktop, f"#ov-cap-{m}")
        assert f"{m}-cars-demo" in cap, cap
        assert "birds-demo" not in cap, cap
    assert "switch the Domain" in _text(desktop, "#fg-status")  # a bird explained by the car models says so


def test_no_result_of_another_image_or_method_stays_on_screen(desktop, served) -> None:
    """Item 1: Faithfulness results are cleared by a new explain and by another method; each names its maker."""
    url, _ = served
    _open(desktop, url)
    _example(desktop, 0)
    _tab(desktop, "Faithfulness")
    desktop.find_element("xpath", "//button[contains(., 'Deletion / insertion')]").click()
    _wait(desktop, "return document.querySelector('#faith-summary').innerText.includes('Deletion AUC')",
          "the deletion/insertion result")
    assert "transfg-birds-demo" in _text(desktop, "#faith-summary")
    _radio(desktop, "domain", "cars")  # a new explanation: the bird models' result must go
    _wait(desktop, "return !document.querySelector('#faith-summary').innerText.includes('Deletion AUC')",
          "the old deletion/insertion result to be cleared")
    _idle(desktop)
    desktop.find_element("xpath", "//button[contains(., 'Sanity check')]").click()
    _wait(desktop, "return document.querySelector('#sanity-summary').innerText.includes('Spearman')",
          "the sanity check")
    assert "transfg-cars-demo" in _text(desktop, "#sanity-summary")
    assert "Deletion AUC" not in _text(desktop, "#faith-summary")
    _radio(desktop, "faith-method", "TASN")  # another method: TransFG's sanity result must go
    _wait(desktop, "return !document.querySelector('#sanity-summary').innerText.includes('Spearman')",
          "the TransFG sanity result to be cleared")


def test_an_error_clears_every_panel(desktop, served, tmp_path) -> None:
    """Item 2: a rejected upload leaves no panel of the previous image, in any tab, and says why once."""
    url, _ = served
    _open(desktop, url)
    _example(desktop, 0)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8), (200, 30, 30)).save(tiny)
    desktop.execute_script("document.querySelectorAll('input[type=file]').forEach(i => i.style.display = 'block')")
    desktop.find_elements("css selector", "input[type=file]")[0].send_keys(str(tiny))
    _toast(desktop, "at least 16x16")
    _wait(desktop, "return document.querySelector('#fg-status').innerText.includes('Nothing shown')",
          "the banner to say nothing is shown")
    _idle(desktop)
    left = desktop.execute_script("""
        return Array.from(document.querySelectorAll('img'))
          .filter(i => i.closest('.tabitem, .tab-content, [role=tabpanel]')
            && !i.closest('.gallery-item, #component-examples, [data-testid=image] .upload-container')
            && i.naturalWidth > 0 && i.offsetParent !== null).map(i => i.src.slice(-30))""")
    assert left == []
    for m in SHOWN:
        assert not desktop.execute_script(f"return document.querySelector('#ov-top-{m} .main-svg .bars .point')")
        assert _text(desktop, f"#ov-cap-{m}").strip() == ""
    for tab in TABS[1:3]:
        _tab(desktop, tab)
        imgs = desktop.execute_script("return Array.from(document.querySelectorAll('[role=tabpanel] img'))"
                                      ".filter(i => i.complete && i.naturalWidth > 0 && i.offsetParent !== null)"
                                      ".map(i => (i.closest('[id]') || {}).id + ' ' + i.src.slice(-40))")
        assert imgs == [], tab


def test_keyboard_moves_the_layer_slider_and_the_figures(desktop, served) -> None:
    """Item 3: Home / arrow keys on the layer slider redraw the rollout (the caption says which layers)."""
    from selenium.webdriver.common.keys import Keys

    url, _ = served
    _open(desktop, url)
    _example(desktop, 0)
    _tab(desktop, "Layers and heads")
    _wait(desktop, _loaded("#layers-rollout img"), "the rollout")
    slider = desktop.find_element("css selector", "#layers-layer input[type=range]")
    slider.send_keys(Keys.HOME)
    _wait(desktop, "return document.querySelector('#layers-caption').innerText.includes('layers 1..1 of')",
          "the caption for layer 1")
    slider.send_keys(Keys.ARROW_RIGHT)
    _wait(desktop, "return document.querySelector('#layers-caption').innerText.includes('layers 1..2 of')",
          "the caption for layer 2")
    assert desktop.execute_script("return document.querySelector('#layers-layer input[type=number]').value") == "2"


def test_step_preview_follows_the_keyboard_and_marks_only_step_one(desktop, served) -> None:
    """Item 5 (second half): moving alpha previews step 1 only; the later captions are not relabelled."""
    from selenium.webdriver.common.keys import Keys

    url, _ = served
    _open(desktop, url)
    _example(desktop, 0)
    _tab(desktop, "Internals")
    _tab(desktop, "RAMS-Trans")
    _wait(desktop, _loaded("#steps-rams_trans img"), "the RAMS-Trans steps")
    _shot(desktop, "desktop_internals")
    slider = desktop.find_element("css selector", "#steps-rams_trans-alpha input[type=range]")
    for _ in range(4):
        slider.send_keys(Keys.ARROW_RIGHT)
    caps = _wait(desktop, "const c = Array.from(document.querySelectorAll('#steps-rams_trans .caption-label'))"
                          ".map(c => c.innerText); return c.some(t => t.includes('preview')) && c",
                 "the preview captions")
    assert all("zoom 1 (preview" in c for c in caps), caps


def test_transfg_overlay_has_no_unshaded_edge(desktop, served) -> None:
    """Item 6: the overlay on screen is the app's, and its right and bottom edges are shaded like the rest."""
    url, ui = served
    _open(desktop, url)
    _example(desktop, 0)
    shown = _image_at(desktop, "#ov-transfg img")
    ours = ui.explain(str(BIRD), "birds", {}, SHOWN, style=Style()).mains["transfg"]
    np.testing.assert_array_equal(shown, ours)
    plain = ui.explain(str(BIRD), "birds", {}, SHOWN, style=Style(alpha=0.0)).mains["transfg"]
    e = ui.explorer.get(ui.explain(str(BIRD), "birds", {}, SHOWN).keys["transfg"])
    f = Style().factor(e.size)
    H, W = e.size[0] * f, e.size[1] * f
    # the last 4 input pixels: where the v1 models' 8-px patches at stride 6 stopped short of 96 px (the demo models'
    # 16-px patches at stride 12 tile 196 px exactly; the border must be shaded either way)
    edge = 4 * f
    for strip in (np.s_[:H, W - edge: W], np.s_[H - edge: H, :W]):
        shaded = np.any(shown[strip] != plain[strip], axis=-1)
        assert shaded.mean() > 0.95, shaded.mean()


def test_every_tab_at_desktop_width(desktop, served) -> None:
    url, _ = served
    _open(desktop, url)
    _example(desktop, 0)
    for tab in ("Export", "About"):
        _tab(desktop, tab)
        _shot(desktop, f"desktop_{tab.lower()}")


# ---- phone ------------------------------------------------------------------------------------------------------


def test_phone_every_tab_is_reachable_and_figures_fill_the_width(phone, served) -> None:
    """Item 8: at 400 px every tab is a visible button, nothing overflows sideways, the views use the width."""
    url, _ = served
    _open(phone, url)
    _example(phone, 0)
    inner = phone.execute_script("return window.innerWidth")
    assert inner == 400
    for tab in TABS:
        rect = phone.execute_script(
            "const b = Array.from(document.querySelectorAll('button[role=tab]')).find(b => b.innerText.trim() === "
            f"{tab!r}); return b && b.offsetParent !== null ? b.getBoundingClientRect().toJSON() : null")
        assert rect is not None, f"tab {tab!r} is not a visible button"
        assert rect["right"] <= inner + 1, tab
        _tab(phone, tab)
        if tab == "Layers and heads":
            _wait(phone, "const i = document.querySelector('#layers-rollout img'); return i && i.getAttribute('src')",
                  "the rollout")
            width = phone.execute_script("return document.querySelector('#layers-rollout img')"
                                         ".getBoundingClientRect().width")
            assert width >= 0.75 * inner, width
        if tab == "Overview":
            width = phone.execute_script("return document.querySelector('#ov-transfg img').getBoundingClientRect()"
                                         ".width")
            assert width >= 0.75 * inner, width
        if tab == "Internals":
            _wait(phone, _loaded("#steps-transfg img"), "the TransFG steps")
        assert phone.execute_script("return document.documentElement.scrollWidth") <= inner + 1, tab
        _shot(phone, f"phone_{tab.split()[0].lower()}")


# ---- issue 21: the patch click, honest pictures, every message said once ------------------------------------------


def _overlap(driver, a: str, b: str) -> float:
    """The area (px^2) where the elements `a` and `b` (CSS selectors) overlap on screen."""
    return driver.execute_script(f"""
        const r = document.querySelector({a!r}).getBoundingClientRect();
        const s = document.querySelector({b!r}).getBoundingClientRect();
        return Math.max(0, Math.min(r.right, s.right) - Math.max(r.left, s.left)) *
               Math.max(0, Math.min(r.bottom, s.bottom) - Math.max(r.top, s.top));""")


def _heads_choices(driver) -> list[str]:
    """The choices the Heads dropdown offers (opened, read, closed)."""
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element("css selector", "#layers-heads input")
    box.click()
    choices = _wait(driver, "const o = Array.from(document.querySelectorAll('ul.options li, [role=option]'))"
                            ".map(li => li.innerText.trim().split('\\n').pop()).filter(t => t); return o.length && o",
                    "the heads list")  # an option's text is its name after the check mark of the selected one
    box.send_keys(Keys.ESCAPE)
    driver.execute_script("document.activeElement.blur()")
    _wait(driver, "return !document.querySelector('ul.options')", "the heads list to close")
    return choices


def test_clicking_a_patch_fills_both_patch_views_and_the_heads(desktop, served) -> None:
    """Issue 21, item 1: a real click on the rollout picks the patch under the pointer; both patch views, the patch
    chart and the Heads choices fill (Gradio passes the click only to a parameter typed gr.SelectData)."""
    from selenium.webdriver.common.action_chains import ActionChains

    url, ui = served
    _open(desktop, url)
    _example(desktop, 0)
    _tab(desktop, "Layers and heads")
    _wait(desktop, _loaded("#layers-rollout img"), "the rollout")
    _idle(desktop)
    e = ui.explorer.get(ui.explain(str(BIRD), "birds", {}, SHOWN).keys["transfg"])
    f = Style().factor(e.size)
    token = e.num_prefix_tokens + (e.grid[0] // 2) * e.grid[1] + e.grid[1] // 3
    x0, y0, x1, y1 = e.token_box(token)
    img = desktop.find_element("css selector", "#layers-rollout img")
    desktop.execute_script("arguments[0].scrollIntoView({block: 'center'})", img)
    time.sleep(0.5)
    rect, natural = img.rect, desktop.execute_script("const i = arguments[0]; return [i.naturalWidth, "
                                                     "i.naturalHeight]", img)
    scale = min(rect["width"] / natural[0], rect["height"] / natural[1], 1)  # how Gradio maps the click back
    pad_x, pad_y = (rect["width"] - natural[0] * scale) / 2, (rect["height"] - natural[1] * scale) / 2
    cx, cy = (x0 + x1) / 2 * f * scale + pad_x, (y0 + y1) / 2 * f * scale + pad_y  # the patch's centre on screen
    ActionChains(desktop).move_to_element_with_offset(img, round(cx - rect["width"] / 2),
                                                      round(cy - rect["height"] / 2)).click().perform()
    r, c = e.token_rc(token)
    _wait(desktop, "return document.querySelector('#layers-caption').innerText.includes('patch at row')",
          "the caption of a clicked patch")
    assert f"patch at row {r}, column {c}," in _text(desktop, "#layers-caption")  # the patch under the pointer
    for view in ("#layers-attends-to", "#layers-attended-by"):
        _wait(desktop, _loaded(f"{view} img"), f"the patch view {view}")
    heads = ui.explorer.analysis(ui.explain(str(BIRD), "birds", {}, SHOWN).keys["transfg"]).H
    assert _heads_choices(desktop) == ["mean", "max", "min", *(f"h{h + 1}" for h in range(heads))]
    _shot(desktop, "desktop_layers")
    desktop.find_element("xpath", "//button[contains(., 'Clear the clicked patch')]").click()
    _wait(desktop, "return !document.querySelector('#layers-caption').innerText.includes('patch at row')",
          "the patch to be cleared")
    _idle(desktop)
    assert _heads_choices(desktop) == ["mean"]  # no patch: its heads are not offered


def test_overview_captions_keys_and_charts(desktop, served) -> None:
    """Issue 21, items 2 and 7: the RAMS-Trans signature caption names the mask and the zoom box (not the crop's),
    every top-5 percentage is drawn at one size, and no label covers a chart's toolbar."""
    url, _ = served
    _open(desktop, url)
    _example(desktop, 0)
    cap = _text(desktop, "#ov-cap-rams_trans")
    assert "mask" in cap and "zoom box" in cap, cap
    assert "resized; scale 2 says" not in cap, cap  # the crop's caption, once overwritten into it
    for m in SHOWN:
        _wait(desktop, f"return document.querySelectorAll('#ov-top-{m} text.bartext').length >= 3",
              f"the {m} top-5 values")
        sizes = desktop.execute_script(f"return Array.from(document.querySelectorAll('#ov-top-{m} text.bartext'))"
                                       ".map(t => parseFloat(getComputedStyle(t).fontSize))")
        assert min(sizes) == max(sizes) >= 12, (m, sizes)
        assert _overlap(desktop, f"#ov-top-{m} label[data-testid=block-label]", f"#ov-top-{m} .modebar") == 0, m
        assert _overlap(desktop, f"#ov-{m} label[data-testid=block-label]", f"#ov-{m} img") == 0, m


def test_sanity_panels_share_one_scale(desktop, served) -> None:
    """Issue 21, item 3: with "one scale for all panels" the re-initialised map (nearly flat) looks flat beside the
    trained one: at full opacity (the panels are the colour map alone) its pixels spread far less."""
    from selenium.webdriver.common.keys import Keys

    url, _ = served
    _open(desktop, url)
    _example(desktop, 0)
    shown = "const s = document.querySelector('#fg-alpha input[type=range]'); return s && s.offsetParent !== null"
    if not desktop.execute_script(shown):
        desktop.find_element("xpath", "//button[contains(., 'Display')]").click()  # the accordion, closed
    slider = _wait(desktop, "const s = document.querySelector('#fg-alpha input[type=range]'); "
                            "return s && s.offsetParent !== null && s", "the opacity slider")
    slider.send_keys(Keys.END)  # opacity 1: the panels show the colour map alone
    _wait(desktop, "return document.querySelector('#fg-alpha input[type=number]').value === '1'", "opacity 1")
    _idle(desktop)
    _tab(desktop, "Faithfulness")
    desktop.find_element("xpath", "//button[contains(., 'Deletion / insertion')]").click()
    _wait(desktop, "return document.querySelector('#faith-summary').innerText.includes('Deletion AUC')",
          "the deletion/insertion result")
    desktop.find_element("xpath", "//button[contains(., 'Sanity check')]").click()
    _wait(desktop, "return document.querySelector('#sanity-summary').innerText.includes('Spearman')",
          "the sanity check")
    _wait(desktop, _loaded("#sanity-image img"), "the sanity panels")
    pair = _image_at(desktop, "#sanity-image img").astype(np.float64).mean(-1)
    half = (pair.shape[1] - 8) // 2  # two panels of one width, 8 px apart
    trained, reinit = (pair[30: pair.shape[0] - 50, x: x + half].std() for x in (0, half + 8))
    assert reinit < 0.25 * trained, (trained, reinit)
    assert _overlap(desktop, "#sanity-image label[data-testid=block-label]", "#sanity-image img") == 0
    _shot(desktop, "desktop_faithfulness")


def test_vit_in_layers_without_its_overview_column(desktop, served) -> None:
    """Issue 21, item 4: the ViT's column is not ticked, yet Layers and Faithfulness show it (explained on demand)."""
    url, _ = served
    _open(desktop, url)
    _example(desktop, 0)
    _tab(desktop, "Layers and heads")
    _wait(desktop, _loaded("#layers-rollout img"), "the TransFG rollout")
    _idle(desktop)
    _radio(desktop, "layers-method", "ViT")
    _wait(desktop, "return document.querySelector('#layers-caption').innerText.includes('vit-birds-demo')",
          "the ViT rollout's caption")
    _wait(desktop, _loaded("#layers-rollout img"), "the ViT rollout")
    _idle(desktop)
    assert "Explain an image" not in _text(desktop, "#layers-caption")
    _tab(desktop, "Faithfulness")
    _radio(desktop, "faith-method", "ViT")
    _idle(desktop)
    desktop.find_element("xpath", "//button[contains(., 'Deletion / insertion')]").click()
    _wait(desktop, "return document.querySelector('#faith-summary').innerText.includes('vit-birds-demo')",
          "the ViT's deletion/insertion result")
    assert not desktop.execute_script("return Array.from(document.querySelectorAll('.toast-body'))"
                                      ".filter(t => t.innerText.trim()).length")


def test_a_non_image_upload_says_why_once(desktop, served, tmp_path, caplog, capfd) -> None:
    """Issue 21, item 5: a text file named .png: one toast that says why, the banner says it too, the log gets one
    line and no traceback (Gradio used to fail decoding it before the app's error path ran)."""
    url, _ = served
    _open(desktop, url)
    _example(desktop, 0)
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not a png")
    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="fgviz.app"):
        desktop.execute_script("document.querySelectorAll('input[type=file]').forEach(i => i.style.display = "
                               "'block')")
        desktop.find_elements("css selector", "input[type=file]")[0].send_keys(str(bad))
        toast = _toast(desktop, "not an image")
        _wait(desktop, "return document.querySelector('#fg-status').innerText.includes('not an image')",
              "the banner to say why")
        _idle(desktop)
        time.sleep(1.0)
    assert "Nothing shown" in _text(desktop, "#fg-status")
    toasts = desktop.execute_script("return Array.from(document.querySelectorAll('.toast-body'))"
                                    ".map(t => t.innerText).filter(t => t.includes('not an image'))")
    assert len(toasts) == 1, toasts
    assert "not an image" in toast
    lines = [r.getMessage() for r in caplog.records if r.name == "fgviz.app"]
    assert len(lines) == 1 and "not an image" in lines[0], lines
    assert all(r.exc_info is None for r in caplog.records)
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-2000:]


def test_phone_internals_galleries_are_readable(phone, served) -> None:
    """Issue 21, item 10: at 400 px every Internals panel is at least 300 px wide, one per row, with its caption in
    full under it (not cut, not under the gallery's label, at least 12 px)."""
    url, _ = served
    _open(phone, url)
    _example(phone, 0)
    _tab(phone, "Internals")
    for m in METHODS:
        _tab(phone, METHODS[m].title)
        _wait(phone, _loaded(f"#steps-{m} img"), f"the {m} steps")
        time.sleep(0.5)
        items = phone.execute_script(f"""
            const label = document.querySelector('#steps-{m} label[data-testid=block-label]').getBoundingClientRect();
            return Array.from(document.querySelectorAll('#steps-{m} .thumbnail-item')).map(t => {{
              const i = t.querySelector('img').getBoundingClientRect(), c = t.querySelector('.caption-label');
              const r = c.getBoundingClientRect();
              return {{width: i.width, font: parseFloat(getComputedStyle(c).fontSize), shown: c.offsetHeight > 0,
                       cut: c.scrollWidth > c.clientWidth + 1 || c.scrollHeight > c.clientHeight + 1,
                       under_label: Math.min(label.bottom, r.bottom) > Math.max(label.top, r.top) ||
                                    Math.min(label.bottom, i.bottom) > Math.max(label.top, i.top)}}; }});""")
        assert items, m
        for k, it in enumerate(items):
            assert it["width"] >= 300, (m, k, it)
            assert it["shown"] and not it["cut"] and not it["under_label"], (m, k, it)
            assert it["font"] >= 12, (m, k, it)
