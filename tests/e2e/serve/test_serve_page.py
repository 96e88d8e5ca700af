"""The page at `/` in a real headless browser (Debian's chromium, driven by Playwright): load, type, play."""

from __future__ import annotations

import shutil

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required", "--mute-audio",
        "--no-first-run", "--disable-extensions"]


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); .ci/run installs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            p = browser.new_page()
            errors: list[str] = []
            p.on("pageerror", lambda e: errors.append(str(e)))
            p.goto(server.base + "/", wait_until="load")
            p.wait_for_function("() => document.getElementById('status').textContent === 'Ready.'", timeout=30000)
            yield p, errors
        finally:
            browser.close()


def _played(p) -> dict:
    p.wait_for_function("() => { const a = document.getElementById('player');"
                        " return a.src && a.duration > 0 && isFinite(a.duration); }", timeout=60000)
    return p.evaluate("() => { const a = document.getElementById('player');"
                      " return {src: a.src, duration: a.duration, status: document.getElementById('status').textContent,"
                      " download: document.getElementById('download').getAttribute('download')}; }")


def test_type_and_play_streaming(page, tmp_path):
    p, errors = page
    assert "tts-1" in p.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
    assert "alloy" in p.eval_on_selector_all("#voice option", "os => os.map(o => o.value)")
    p.fill("#text", "Good morning. The page streams this text sentence by sentence.")
    p.click("#speak")
    info = _played(p)
    shot = tmp_path / "serve-page.png"
    p.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}; {info}")
    assert shot.stat().st_size > 5000
    assert info["src"].startswith("blob:") and info["duration"] > 2
    assert "First audio after" in info["status"] and info["download"] == "speech.wav"
    assert not errors


def test_type_and_play_a_whole_mp3(page, tmp_path):
    p, errors = page
    p.evaluate("() => { document.getElementById('player').removeAttribute('src'); }")
    p.uncheck("#stream")
    p.select_option("#format", "mp3")
    p.fill("#text", "A short text as one mp3 file.")
    p.click("#speak")
    info = _played(p)
    p.wait_for_function("() => document.getElementById('player').currentTime > 0.2", timeout=30000)  # it plays
    p.screenshot(path=str(tmp_path / "serve-page-mp3.png"))
    assert info["duration"] > 1 and info["download"] == "speech.mp3" and "Done in" in info["status"]
    assert not errors
