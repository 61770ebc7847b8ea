"""Browser-test kit: `streamlit run app.py` on a free port, Debian's chromium, and waits on page conditions."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from streamlit_client import start_server  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
WAIT_MS = 90_000
ALL_ALPHAS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].some(p => (p.data || []).some(
    t => t.x && t.x.length === 21 && t.error_x && t.error_x.array && t.error_x.array.length === 21))"""
# True once the condition has held at `polls` checks in a row (a rerun briefly clears the page between two states).
_SETTLED_JS = """([name, polls]) => {{
    const busy = {busy};
    window[name] = busy ? 0 : (window[name] || 0) + 1;
    return window[name] >= polls; }}"""
# The sweep is complete: no progress bar and no "being filled in" note.
SWEEP_DONE_JS = _SETTLED_JS.format(busy="document.querySelector('[data-testid=\"stProgress\"]') !== null"
                                   " || document.body.innerText.includes('being filled in')")
# Nothing left to draw: no script run, no stale element waiting for its rerun, every plotly plot drawn and still.
IDLE_JS = _SETTLED_JS.format(busy="""document.querySelector(
        '[data-testid="stStatusWidgetRunningIcon"], [data-stale="true"]') !== null
        || [...document.querySelectorAll('.js-plotly-plot')].some(p => !p._fullLayout || p._transitioning)""")


def start_app(toml: Path, cache: Path, **extra_env: str) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on a free port for an experiment and cache folder, once it answers its health check
    (the benchmarks' starter, streamlit_client.start_server, with the server's output in a log file)."""
    env = {"WISEFT_EXPERIMENT": str(toml), "WISEFT_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "2", **extra_env}
    # The server's output goes to a file, never to a pipe: nobody reads a pipe while the test runs, and once its
    # 64 KiB filled (warnings of many reruns) the server blocked in a write, mid-rerun, and the page waited forever.
    fd, name = tempfile.mkstemp(prefix="streamlit-", suffix=".log", dir=Path(cache).parent)
    os.close(fd)
    log = Path(name)
    try:
        proc, url = start_server(ROOT / "app.py", env, log)
    except RuntimeError as err:
        raise RuntimeError(f"{err}: {log.read_text(errors='replace')[-2000:]}") from err
    proc.log_path = log  # type: ignore[attr-defined]
    return proc, url


@contextlib.contextmanager
def app_page(toml: Path, cache: Path, height: int = 1000, **extra_env: str) -> Iterator[tuple[Any, subprocess.Popen]]:
    """A chromium page opened on a new server for an experiment and cache folder (start_app), and that server;
    the browser and the server are closed after."""
    from playwright.sync_api import sync_playwright

    proc, url = start_app(toml, cache, **extra_env)
    try:
        with sync_playwright() as pw:
            browser = launch(pw)
            page = browser.new_page(viewport={"width": 1400, "height": height})
            page.goto(url, timeout=WAIT_MS)
            yield page, proc
            browser.close()
    finally:
        stop_app(proc)


def server_log(proc: subprocess.Popen) -> str:
    """What a server started by start_app has printed so far."""
    return proc.log_path.read_text(errors="replace")  # type: ignore[attr-defined]


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()



def wait_settled(page, condition_js: str, polls: int, every_ms: int) -> None:
    """Block until a _SETTLED_JS condition holds at `polls` checks in a row, `every_ms` apart."""
    page.evaluate("() => { window.wiseftSettled = 0; }")  # count from this call on, not from an earlier wait
    page.wait_for_function(condition_js, arg=["wiseftSettled", polls], polling=every_ms, timeout=WAIT_MS)


def wait_sweep_complete(page) -> None:
    """Block until the page shows the complete sweep: no progress bar and no filling-in note at two checks in a row."""
    wait_settled(page, SWEEP_DONE_JS, 2, 750)


def wait_idle(page) -> None:
    """Block until the page has drawn everything (for a screenshot): idle at three checks 250 ms apart."""
    wait_settled(page, IDLE_JS, 3, 250)


def id_metric(page) -> tuple[str, str]:
    metric = page.locator('[data-testid="stMetric"]').first
    return (metric.locator('[data-testid="stMetricLabel"]').inner_text(),
            metric.locator('[data-testid="stMetricValue"]').inner_text())



def launch(pw):
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
