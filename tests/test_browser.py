"""Real-browser test: `streamlit run app.py` driven by Playwright + Debian chromium; screenshots of every page."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_app import make_app_experiment, png_bytes

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
WAIT_MS = 90_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (installed by .ci/run)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}: {proc.stdout.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("streamlit did not become healthy")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on a free port, pointed at a tiny experiment with its own cache."""
    root = tmp_path_factory.mktemp("browser")
    toml = make_app_experiment(root / "exp")
    port = _free_port()
    env = {**os.environ, "WISEFT_EXPERIMENT": str(toml), "WISEFT_CACHE_DIR": str(root / "cache"),
           "OMP_NUM_THREADS": "2", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless",
                             "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--server.fileWatcherType", "none"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_sweep_complete(page, timeout_s: float = WAIT_MS / 1000) -> None:
    """Block until the page shows the complete sweep: no progress bar and no filling-in note for two checks."""
    deadline, settled = time.monotonic() + timeout_s, 0
    while settled < 2:
        busy = page.locator('[data-testid="stProgress"]').count() + page.get_by_text("being filled in").count()
        settled = settled + 1 if busy == 0 else 0
        assert time.monotonic() < deadline, "the sweep never completed in the browser"
        page.wait_for_timeout(750)


def _id_metric(page) -> tuple[str, str]:
    metric = page.locator('[data-testid="stMetric"]').first
    return (metric.locator('[data-testid="stMetricLabel"]').inner_text(),
            metric.locator('[data-testid="stMetricValue"]').inner_text())


def test_browser_explorer_slider_upload_and_screenshots(server):
    from playwright.sync_api import expect, sync_playwright

    url, root = server
    ARTIFACTS.mkdir(exist_ok=True)
    image = root / "upload.png"
    image.write_bytes(png_bytes("green circle"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url, timeout=WAIT_MS)
        expect(page.get_by_text("ID accuracy (ID) at α = 0.5")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=WAIT_MS)
        # Wait until the progressive sweep has filled the whole grid (no progress bar, no "being filled in" note,
        # twice in a row), so the keys below move a settled page and the metric values compare like with like.
        _wait_sweep_complete(page)
        label0, value0 = _id_metric(page)
        slider = page.locator('[data-testid="stSlider"] input[type="range"]').first
        slider.focus()
        for _ in range(10):  # 0.5 -> 1.0 in steps of 0.05
            page.keyboard.press("ArrowRight")
        expect(page.locator('[data-testid="stMetricLabel"]').first).to_have_text("ID accuracy (ID) at α = 1",
                                                                                timeout=WAIT_MS)
        expect(page.locator('[data-testid="stSliderThumbValue"]').first).to_have_text("1.00", timeout=WAIT_MS)
        label1, value1 = _id_metric(page)
        assert (label0, label1) == ("ID accuracy (ID) at α = 0.5", "ID accuracy (ID) at α = 1")
        assert value1 != value0 and value1 == "100.0%"
        assert "alpha=1" in page.url
        page.wait_for_timeout(1000)  # let plotly finish its transition before the screenshot
        page.screenshot(path=str(ARTIFACTS / "explorer.png"), full_page=True)

        page.goto(f"{url}/Gallery?alpha=0.9", timeout=WAIT_MS)
        expect(page.get_by_text("Probability vs α")).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_text("match at α = 0.9")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator('[data-testid="stImage"] img').first).to_be_visible(timeout=WAIT_MS)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "gallery.png"), full_page=True)

        page.goto(f"{url}/Upload", timeout=WAIT_MS)
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(image))
        expect(page.get_by_text("1 of 1 file(s) predicted.")).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_text("fine-tuned (α = 1)")).to_be_visible(timeout=WAIT_MS)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "upload.png"), full_page=True)

        page.goto(f"{url}/Models", timeout=WAIT_MS)
        expect(page.get_by_text("Configure a real experiment")).to_be_visible(timeout=WAIT_MS)
        page.screenshot(path=str(ARTIFACTS / "models.png"), full_page=True)
        browser.close()
    for name in ("explorer", "gallery", "upload", "models"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000
