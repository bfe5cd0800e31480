"""The page in a real headless Chromium (Debian's), driven by Playwright.

It logs in through the form and must see at least 10 distinct JPEG frames arrive
over the websocket, and the FPS counter move.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest

from raspberry_pancake.web.auth import hash_password

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"
)

# flags that keep a headless Chromium from reaching for the network or a GPU
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_login_then_at_least_ten_distinct_frames(browser, pancake, tmp_path):
    pw = tmp_path / "password.txt"
    pw.write_text(hash_password("hello pancake") + "\n")
    p = pancake("--camera", "sim", "--resolution", "320", "240", "--fps", "15", "--login", str(pw))
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    digests = []

    def on_websocket(ws):
        def on_frame(payload):
            if isinstance(payload, (bytes, bytearray)):
                assert payload[:2] == b"\xff\xd8", "not a JPEG"
                digests.append(hashlib.sha1(payload).hexdigest())

        ws.on("framereceived", on_frame)

    page.on("websocket", on_websocket)
    page.goto(p.url + "/")
    assert page.url.endswith("/login")
    page.fill("#password", "hello pancake")
    page.click("button[type=submit]")
    page.wait_for_url(p.url + "/")
    page.wait_for_function("document.getElementById('status').textContent === 'live'")
    page.wait_for_function("Number(document.getElementById('fps').textContent) > 1", timeout=15000)
    deadline = 200
    while len(set(digests)) < 10 and deadline:
        page.wait_for_timeout(100)
        deadline -= 1
    assert len(set(digests)) >= 10, f"only {len(set(digests))} distinct frames"
    assert len(set(digests)) == len(digests), "a frame arrived twice"
    # the picture is shown and fits the phone's width
    width = page.eval_on_selector("#live-view", "img => img.getBoundingClientRect().width")
    natural = page.eval_on_selector("#live-view", "img => img.naturalWidth")
    assert natural == 320 and 0 < width <= 390
    page.screenshot(path=str(tmp_path / "live.png"))


def test_wrong_password_shows_an_error(browser, pancake, tmp_path):
    pw = tmp_path / "password.txt"
    pw.write_text(hash_password("right one") + "\n")
    p = pancake("--camera", "sim", "--login", str(pw))
    page = browser.new_page()
    page.goto(p.url + "/login")
    page.fill("#password", "wrong one")
    page.click("button[type=submit]")
    page.wait_for_selector(".error", timeout=15000)
    assert "Wrong password" in page.inner_text(".error")
    page.goto(p.url + "/")
    assert page.url.endswith("/login")


def test_stream_mjpg_plays_in_an_img_tag(browser, pancake):
    """Chromium decodes /stream.mjpg in a plain <img>, as a dashboard page would show it.

    The test page is served from the camera's own origin, so that the pictures
    can be read back through a canvas and told apart.
    """
    p = pancake("--camera", "sim", "--resolution", "320", "240", "--fps", "15")
    page = browser.new_page()
    html = '<img id="stream" src="/stream.mjpg"><canvas id="c" width="320" height="240"></canvas>'
    page.route(
        p.url + "/dashboard.html",
        lambda route: route.fulfill(status=200, content_type="text/html", body=html),
    )
    page.goto(p.url + "/dashboard.html")
    page.wait_for_function("document.getElementById('stream').naturalWidth === 320")
    fingerprint = """() => {
        const c = document.getElementById('c'), ctx = c.getContext('2d');
        ctx.drawImage(document.getElementById('stream'), 0, 0);
        const d = ctx.getImageData(0, 0, 320, 240).data;
        let h = 0;
        for (let i = 0; i < d.length; i += 7) { h = (h * 31 + d[i]) >>> 0; }
        return h;
    }"""
    seen = set()
    for _ in range(200):
        seen.add(page.evaluate(fingerprint))
        if len(seen) >= 5:
            break
        page.wait_for_timeout(100)
    assert len(seen) >= 5, f"the picture changed only {len(seen)} times"
