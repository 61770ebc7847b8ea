"""Time the Explorer page in a real browser: cold start (empty cache) and warm start (cache filled), on the demo.

    python benchmarks/app_start.py [--cold 2] [--warm 3] [--plain] [--experiment FILE (default: the built-in demo)]

Each start launches a new server for app.py as `wiseft-explorer app` does (`python -m wiseft_explorer.ui.preload
run`: `streamlit run` with torch's imports begun at server start; `--plain`: a bare `streamlit run app.py`, where
they begin at the first visitor), waits for /_stcore/health ("server_start_s": launch to healthy), opens the
page in Debian chromium through Playwright and times, from the page request: the α slider, the first metric card
and plot ("first curves"), and the moment no progress bar or "being filled in" note is left ("full curves"). A cold
start uses an empty cache folder; warm starts reuse the folder the last cold start filled. "next visitor" is a
second page on the warm server. "reference" is a bare Streamlit page with a title, a metric and two small plotly
charts, started the same way in turns with the warm starts: the browser's floor on the same machine at the same
time. Prints one line per run and the medians as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from wiseft_explorer.experiment import DEFAULT_EXPERIMENT

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
DONE_JS = """() => document.querySelectorAll('[data-testid="stProgress"]').length === 0
    && document.querySelectorAll('.js-plotly-plot').length >= 2
    && !document.body.textContent.includes('being filled in')"""
# Every alpha of the grid drawn with its interval: the ID-vs-shift path has 21 points with error bars.
ALL_ALPHAS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].some(p => (p.data || []).some(
    t => t.x && t.x.length === 21 && t.error_x && t.error_x.array && t.error_x.array.length === 21))"""
TIMEOUT_MS = 300_000
PRELOAD_LAUNCHER = "wiseft_explorer.ui.preload"  # what `wiseft-explorer app` runs (cli/serve.py's PRELOAD_MODULE)


REFERENCE_APP = """import plotly.graph_objects as go
import streamlit as st
st.title("reference")
st.metric("metric", "1.0%")
st.plotly_chart(go.Figure(go.Scatter(x=[0, 1, 2], y=[1, 3, 2])))
st.plotly_chart(go.Figure(go.Scatter(x=[0, 1, 2], y=[2, 1, 3])))
"""


def start_server(cache: Path, experiment: Path, script: str = "app.py",
                 launcher: str = PRELOAD_LAUNCHER) -> tuple[subprocess.Popen, str]:
    """A fresh Streamlit server on a free port, healthy (the classroom benchmark's starter, with this cache)."""
    from streamlit_client import start_server as start  # a sibling module: benchmarks/ is the script's folder

    return start(ROOT / script, {"WISEFT_CACHE_DIR": str(cache), "WISEFT_EXPERIMENT": str(experiment)},
                 launcher=launcher)


def time_page(browser, url: str, first_widget: str = '[data-testid="stSlider"]') -> dict[str, float]:
    """Seconds from the page request to: slider, first curves, full curves."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    t0 = time.perf_counter()
    page.goto(url, timeout=TIMEOUT_MS)
    page.locator(first_widget).first.wait_for(state="visible", timeout=TIMEOUT_MS)
    slider = time.perf_counter() - t0
    page.locator('[data-testid="stMetric"]').first.wait_for(state="visible", timeout=TIMEOUT_MS)
    page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=TIMEOUT_MS)
    first = time.perf_counter() - t0
    if first_widget != "h1":  # the reference page has no alpha grid
        page.wait_for_function(ALL_ALPHAS_JS, polling=250, timeout=TIMEOUT_MS)
    all_alphas = time.perf_counter() - t0
    # Full curves: no progress bar, no "being filled in" note and both plots drawn, checked inside the page every
    # 0.25 s (one cheap DOM query, no layout: heavier polling from outside slowed the sweep it was timing) and
    # confirmed once more 0.25 s later; the time of the first sighting is reported.
    while True:
        page.wait_for_function(DONE_JS, polling=250, timeout=TIMEOUT_MS)
        seen_at = time.perf_counter() - t0
        page.wait_for_timeout(250)
        if page.evaluate(DONE_JS):
            break
    page.close()
    return {"slider_s": round(slider, 2), "first_curves_s": round(first, 2), "all_alphas_s": round(all_alphas, 2),
            "full_curves_s": round(seen_at, 2)}


def main(argv: list[str] | None = None) -> dict:
    """Run the cold and warm starts and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=2, help="cold starts (each with an empty cache)")
    parser.add_argument("--warm", type=int, default=3, help="warm starts (new server, filled cache)")
    parser.add_argument("--experiment", type=Path, default=DEFAULT_EXPERIMENT)
    parser.add_argument("--plain", action="store_true",
                        help="start the app with a bare `streamlit run app.py` (imports begin at the first visitor)")
    parser.add_argument("--reference", type=int, default=3,
                        help="starts of a bare two-plot Streamlit page: the browser's floor on this machine")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {"cold": [], "warm": [], "next_visitor": [], "reference": []}
    cache = Path(tempfile.mkdtemp(prefix="wiseft-app-start-"))
    reference = Path(tempfile.mkdtemp(prefix="wiseft-reference-")) / "reference_app.py"
    reference.write_text(REFERENCE_APP)
    try:
        with sync_playwright() as pw:
            for kind in ["cold"] * args.cold + ["warm", "reference"] * max(args.warm, args.reference):
                if len(runs[kind]) >= {"cold": args.cold, "warm": args.warm, "reference": args.reference}[kind]:
                    continue
                if kind == "cold":
                    shutil.rmtree(cache, ignore_errors=True)
                    cache.mkdir()
                # A new server and a new browser per start, so that no start inherits another's processes.
                script, widget = "app.py", '[data-testid="stSlider"]'
                launcher = "streamlit" if args.plain else PRELOAD_LAUNCHER
                if kind == "reference":  # interleaved with the warm starts, so both see the same machine
                    script, widget, launcher = str(reference), "h1", "streamlit"
                launched = time.perf_counter()
                proc, url = start_server(cache, args.experiment.resolve(), script, launcher)
                healthy = round(time.perf_counter() - launched, 2)
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                try:
                    runs[kind].append({"server_start_s": healthy, **time_page(browser, url, widget)})
                    print(kind, json.dumps(runs[kind][-1]), flush=True)
                    if kind == "warm":
                        runs["next_visitor"].append(time_page(browser, url))
                        print("next_visitor", json.dumps(runs["next_visitor"][-1]), flush=True)
                finally:
                    browser.close()
                    proc.terminate()
                    proc.wait(30)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(reference.parent, ignore_errors=True)
    medians = {kind: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for kind, rows in runs.items() if rows}
    print(json.dumps({"median": medians, "runs": {k: len(v) for k, v in runs.items()}}, indent=1))
    return medians


if __name__ == "__main__":
    main()
