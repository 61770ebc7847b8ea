"""Browser-test kit: `streamlit run app.py` on a free port, Debian's chromium, and waits on page conditions."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}: {server_log(proc)[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("streamlit did not become healthy")


def start_app(toml: Path, cache: Path, **extra_env: str) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on a free port for an experiment and cache folder, once it answers its health check."""
    port = free_port()
    env = {**os.environ, "WISEFT_EXPERIMENT": str(toml), "WISEFT_CACHE_DIR": str(cache),
           "OMP_NUM_THREADS": "2", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", **extra_env}
    # The server's output goes to a file, never to a pipe: nobody reads a pipe while the test runs, and once its
    # 64 KiB filled (warnings of many reruns) the server blocked in a write, mid-rerun, and the page waited forever.
    log = Path(cache).parent / f"streamlit-{port}.log"
    with log.open("wb") as out:  # the server keeps its own copy of the file
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless",
                                 "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                                 "--server.fileWatcherType", "none"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    proc.log_path = log  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url


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
