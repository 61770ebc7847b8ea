"""Real-browser test: `streamlit run app.py` driven by Playwright + Debian chromium; screenshots of every page."""

from __future__ import annotations

import re
import time

import pytest
from browserkit import (
    ALL_ALPHAS_JS,
    ARTIFACTS,
    CHROMIUM,
    WAIT_MS,
    app_page,
    id_metric,
    launch,
    start_app,
    stop_app,
    wait_idle,
    wait_sweep_complete,
)
from test_app import png_bytes
from test_endpoints import two_endpoint_experiment

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (installed by .ci/run)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on a free port, pointed at a tiny experiment with two fine-tuned endpoints and its own cache."""
    root = tmp_path_factory.mktemp("browser")
    toml = two_endpoint_experiment(root)
    proc, url = start_app(toml, root / "cache")
    try:
        yield url, root
    finally:
        stop_app(proc)


def _page_content(page, name: str) -> list:
    """Locators of what each page shows once drawn (for the sized screenshots)."""
    plot = page.locator(".js-plotly-plot")
    return {"explorer": [page.get_by_text("ID at α = 0.5"), plot, page.locator(".legendtext", has_text="WiSE-FT path")],
            "gallery": [page.get_by_text("Probability vs α"), page.locator('[data-testid="stImage"] img'), plot],
            "upload": [page.locator('[data-testid="stFileUploader"]'), page.get_by_text("Draw", exact=True)],
            "models": [page.get_by_text("Configure a real experiment"),
                       page.get_by_role("button", name="Validate and save")],
            "lesson": [page.get_by_text(re.compile(r"Step 5 of \d+: .* · α = [0-9.]+")),
                       page.get_by_text("Instead of mixing weights"),
                       page.locator(".legendtext", has_text="output ensemble")]}[name]



def test_browser_explorer_slider_upload_and_screenshots(server):
    from playwright.sync_api import expect, sync_playwright

    url, root = server
    ARTIFACTS.mkdir(exist_ok=True)
    image = root / "upload.png"
    image.write_bytes(png_bytes("green circle"))
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url, timeout=WAIT_MS)
        expect(page.get_by_text("ID at α = 0.5")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=WAIT_MS)
        # Wait until the progressive sweep has filled the whole grid (no progress bar, no "being filled in" note,
        # twice in a row), so the keys below move a settled page and the metric values compare like with like.
        wait_sweep_complete(page)
        label0, value0 = id_metric(page)
        slider = page.locator('[data-testid="stSlider"] input[type="range"]').first
        slider.focus()
        for _ in range(10):  # 0.5 -> 1.0 in steps of 0.05
            page.keyboard.press("ArrowRight")
        expect(page.locator('[data-testid="stMetricLabel"]').first).to_have_text("ID at α = 1",
                                                                                timeout=WAIT_MS)
        expect(page.locator('[data-testid="stSliderThumbValue"]').first).to_have_text("1.00", timeout=WAIT_MS)
        label1, value1 = id_metric(page)
        assert (label0, label1) == ("ID at α = 0.5", "ID at α = 1")
        assert value1 != value0 and value1 == "100.0%"
        assert "alpha=1" in page.url
        # Both fine-tuned endpoints are WiSE-FT paths of their own, each with its output-space ensemble (the second
        # endpoint's sweep starts once the first is complete).
        expect(page.locator(".legendtext", has_text="WiSE-FT path: far").first).to_be_visible(timeout=WAIT_MS)
        texts = page.eval_on_selector_all(".legendtext", "els => els.map(e => e.textContent)")
        assert {"WiSE-FT path: centroid", "WiSE-FT path: far", "output ensemble: centroid"} <= set(texts), texts
        # An off-grid alpha typed into the exact box: no hint over the typed value, and the page says where it is.
        exact = page.get_by_test_id("stNumberInputField").first
        exact.fill("0.37")
        assert not page.get_by_test_id("InputInstructions").first.is_visible()
        exact.press("Enter")
        expect(page.get_by_text("lies between the grid values 0.35 and 0.40")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator('[data-testid="stMetricLabel"]').first).to_have_text("ID at α = 0.37", timeout=WAIT_MS)
        wait_idle(page)  # plotly has finished its transition
        page.screenshot(path=str(ARTIFACTS / "explorer.png"), full_page=True)

        page.goto(f"{url}/Gallery?alpha=0.9", timeout=WAIT_MS)
        expect(page.get_by_text("Probability vs α")).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_text("match at α = 0.9")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator('[data-testid="stImage"] img').first).to_be_visible(timeout=WAIT_MS)
        wait_idle(page)
        page.screenshot(path=str(ARTIFACTS / "gallery.png"), full_page=True)

        page.goto(f"{url}/Upload", timeout=WAIT_MS)
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(image))
        expect(page.get_by_text("1 of 1 file(s) predicted.")).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_text("fine-tuned (α = 1)")).to_be_visible(timeout=WAIT_MS)
        wait_idle(page)
        page.screenshot(path=str(ARTIFACTS / "upload.png"), full_page=True)

        # A stroke drawn on the canvas goes straight to the three models.
        page.get_by_text("Draw", exact=True).click()
        canvas = page.locator("canvas.upper-canvas").first
        expect(canvas).to_be_visible(timeout=WAIT_MS)
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + 60, box["y"] + 60)
        page.mouse.down()
        for step in range(1, 21):
            page.mouse.move(box["x"] + 60 + 8 * step, box["y"] + 60 + 5 * step)
        page.mouse.up()
        expect(page.get_by_text("your drawing")).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_text("fine-tuned (α = 1)")).to_be_visible(timeout=WAIT_MS)
        wait_idle(page)
        page.screenshot(path=str(ARTIFACTS / "upload-drawing.png"), full_page=True)

        page.goto(f"{url}/Models", timeout=WAIT_MS)
        expect(page.get_by_text("Configure a real experiment")).to_be_visible(timeout=WAIT_MS)
        # An experiment whose shift folder has a class folder no class name matches: one line, no traceback.
        exp_dir = root / "exp"
        bad = root / "bad-shift" / "unknown class"
        bad.mkdir(parents=True)
        (bad / "x.png").write_bytes(png_bytes())
        fields = {"open_clip model name": "wiseft-tiny-rn",
                  "pretrained tag or checkpoint path": str(exp_dir / "zeroshot.safetensors"),
                  "custom model config JSON (optional)": str(exp_dir / "wiseft-tiny-rn.json"),
                  "fine-tuned checkpoint path (.safetensors, transformers: or timm: folder)":
                      str(exp_dir / "finetuned.safetensors"),
                  "class names, one per line": "red square\ngreen circle\nblue stripes",
                  "ID test folder": str(exp_dir / "id"), "shift 1 folder": str(root / "bad-shift")}
        for label, value in fields.items():
            page.get_by_label(label, exact=True).fill(value)
        page.get_by_role("button", name="Validate and save").click()
        expect(page.get_by_text("Not saved: fix the folders below first.")).to_be_visible(timeout=WAIT_MS)
        problem = page.get_by_text("'unknown class' match no class name")
        expect(problem).to_be_visible(timeout=WAIT_MS)
        assert "\n" not in problem.inner_text().strip()
        assert page.locator('[data-testid="stException"]').count() == 0 and "Traceback" not in page.content()
        page.screenshot(path=str(ARTIFACTS / "models.png"), full_page=True)

        # The lesson: every step by its link, with its alpha and its text, then Next to the following one.
        page.goto(f"{url}/Lesson?step=1", timeout=WAIT_MS)
        first = page.get_by_text(re.compile(r"Step 1 of \d+: "))
        expect(first).to_be_visible(timeout=WAIT_MS)
        # 6 steps, and the soups step since this experiment's two endpoints share θ₀
        steps = int(re.search(r"Step 1 of (\d+):", first.inner_text()).group(1))
        assert steps == 7
        for number in range(1, steps + 1):
            heading = page.get_by_role("heading", name=re.compile(rf"^{number}\. "))
            expect(heading).to_be_visible(timeout=WAIT_MS)
            expect(page.get_by_text(re.compile(rf"Step {number} of {steps}: .* · α = [0-9.]+"))).to_be_visible(
                timeout=WAIT_MS)
            assert f"step={number}" in page.url and "alpha=" in page.url
            if number < steps:
                page.get_by_role("button", name="Next →").click()
        expect(page.locator("canvas.upper-canvas").first).to_be_visible(timeout=WAIT_MS)
        page.screenshot(path=str(ARTIFACTS / "lesson.png"), full_page=True)
        for width, height in ((1280, 720), (1280, 800), (1920, 1080)):  # projectors, a laptop, a wide screen
            sized = browser.new_page(viewport={"width": width, "height": height})
            for name, path in (("explorer", ""), ("gallery", "/Gallery"), ("upload", "/Upload"),
                               ("models", "/Models"), ("lesson", "/Lesson?step=5")):
                sized.goto(f"{url}{path}", timeout=WAIT_MS)
                expect(sized.locator("h1").first).to_be_visible(timeout=WAIT_MS)
                for shown in _page_content(sized, name):  # what the page is for, not only its title
                    expect(shown.first).to_be_visible(timeout=WAIT_MS)
                wait_idle(sized)
                sized.screenshot(path=str(ARTIFACTS / f"{name}-{width}x{height}.png"))
            sized.close()
        browser.close()
    for name in ("explorer", "gallery", "upload", "upload-drawing", "models", "lesson", "explorer-1280x720",
                 "explorer-1280x800", "models-1280x800", "lesson-1920x1080"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000


def _images_line(page) -> tuple[int, int]:
    """(images done, images) from the Explorer's 'being filled in' note."""
    text = page.get_by_text("being filled in").first.inner_text()
    done, total = text.split("from the first ")[1].split(" images")[0].split(" of ")
    return int(done.replace(",", "")), int(total.replace(",", ""))


def test_browser_watches_estimates_sharpen_and_a_killed_server_resume(tmp_path):
    """First estimates of every alpha, sharper ones, SIGKILL of the server, a new server resumes, final numbers."""
    from playwright.sync_api import expect, sync_playwright
    from test_app_stream import make_streaming_experiment

    from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep
    from wiseft_explorer.store import DiskCache

    ARTIFACTS.mkdir(exist_ok=True)
    toml = make_streaming_experiment(tmp_path / "exp", per_class=200)
    state_dir = toml.parent / "cache"  # the experiment's own cache folder (its TOML sets cache_dir)
    total = 600 + 10 + 18
    with sync_playwright() as pw:
        browser = launch(pw)
        proc, url = start_app(toml, tmp_path / "unused-cache", WISEFT_SAVE_SECONDS="0")
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, timeout=WAIT_MS)
            expect(page.get_by_text("being filled in")).to_be_visible(timeout=WAIT_MS)
            page.wait_for_function(ALL_ALPHAS_JS, timeout=WAIT_MS)  # all 21 alphas, each with its error bars
            first_done, seen_total = _images_line(page)
            assert seen_total == total and 0 < first_done < total
            page.screenshot(path=str(ARTIFACTS / "explorer-first-estimates.png"), full_page=True)
            # Sharper estimates replace the first ones while the sweep goes on.
            page.wait_for_function(f"() => {{ const m = document.body.textContent.match(/from the first ([0-9,]+) of/);"
                                   f" return m && Number(m[1].replace(/,/g, '')) > {first_done}; }}",
                                   polling=500, timeout=WAIT_MS)
            deadline = time.monotonic() + 60
            while not list(state_dir.glob("*.safetensors")):  # a file on disk: polled, not a page condition
                assert time.monotonic() < deadline, "the app never saved its partial state"
                time.sleep(0.1)
            proc.kill()  # SIGKILL: no clean-up runs in the server
            proc.wait(timeout=30)
        finally:
            stop_app(proc)
        states = list(state_dir.glob("*.safetensors"))
        assert len(states) == 1, "the killed server left no partial state (or finished before the kill)"
        _, meta = DiskCache(state_dir).get_entry(states[0].stem)
        saved = sum(meta["done"])
        assert 0 < saved < total
        proc, url = start_app(toml, tmp_path / "unused-cache", WISEFT_SAVE_SECONDS="0")
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, timeout=WAIT_MS)
            expect(page.locator('[data-testid="stMetric"]').first).to_be_visible(timeout=WAIT_MS)
            # The new server goes on from the saved state, and says so in its progress line.
            expect(page.get_by_text(f"(resumed: {saved:,} were done before a restart)")).to_be_visible(timeout=WAIT_MS)
            assert _images_line(page)[0] >= saved
            wait_sweep_complete(page)
            wait_idle(page)
            page.screenshot(path=str(ARTIFACTS / "explorer-final.png"), full_page=True)
            label, value = id_metric(page)
        finally:
            stop_app(proc)
        browser.close()
    assert states[0].stem not in {p.stem for p in state_dir.glob("*.safetensors")}  # removed once finished
    reference = run_sweep(ExperimentRuntime.from_path(toml), cache=DiskCache(tmp_path / "reference")).table()
    assert label == "ID at α = 0.5" and value == f"{100 * reference.loc[0.5, 'ID']:.1f}%"


_TESTBED_TRACES_JS = """() => Math.max(0, ...[...document.querySelectorAll('.js-plotly-plot')].map(
    p => (p.data || []).filter(t => t.legendgroup === 'testbed').length))"""


def test_browser_toggles_the_testbed_overlay_and_reads_an_effective_robustness_card(tiny, tmp_path):
    """A tiny experiment on fake ImageNet presets: the testbed's models and line are drawn and can be hidden, and
    the effective-robustness card shows points with their error."""
    from fake_datasets import fake_imagenet_layout
    from playwright.sync_api import expect
    from test_presets import _preset_experiment

    from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep

    sets = "".join(f'{table}\nname = "{name}"\npreset = "{key}"\nlimit = 40\n'
                   f'source = "{fake_imagenet_layout(tmp_path / key, key)}"\n'
                   for table, name, key in (("[id]", "ImageNet", "imagenet"), ("[[shifts]]", "V2", "imagenet-v2")))
    toml = _preset_experiment(tmp_path, tiny, "imagenet", sets)
    run_sweep(ExperimentRuntime.from_path(toml))  # stored curves: the app starts warm
    with app_page(toml, tmp_path / "cache", height=1100) as (page, _):
        card = page.locator('[data-testid="stMetric"]', has_text="Effective robustness at α = 0.5")
        expect(card).to_be_visible(timeout=WAIT_MS)
        value = card.locator('[data-testid="stMetricValue"]').inner_text()
        assert re.fullmatch(r"[+-]\d+\.\d pts ± \d+\.\d", value), value
        expect(page.locator(".legendtext", has_text="testbed: Standard training (87)")).to_be_visible(
            timeout=WAIT_MS)
        assert page.evaluate(_TESTBED_TRACES_JS) >= 3  # points by type, the band and the line
        toggle = page.get_by_text("Show the robustness testbed's models and line")
        toggle.click()
        page.wait_for_function(f"() => ({_TESTBED_TRACES_JS})() === 0", timeout=WAIT_MS)
        expect(page.locator(".legendtext", has_text="testbed: ")).to_have_count(0)
        toggle.click()
        page.wait_for_function(f"() => ({_TESTBED_TRACES_JS})() >= 3", timeout=WAIT_MS)
        page.screenshot(path=str(ARTIFACTS / "explorer-testbed.png"), full_page=True)


def test_browser_a_warm_page_gets_the_other_endpoint_after_it_and_the_table_when_asked(tmp_path):
    """The first endpoint's curves are stored, the second's are not: the page is drawn from the stored ones, the
    second endpoint's path arrives once the browser's first timed rerun of the endpoints line has started its sweep
    (test_endpoints.py checks that the page run itself does not), and the results table is built when its box opens."""
    from playwright.sync_api import expect

    from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep

    two = two_endpoint_experiment(tmp_path)
    run_sweep(ExperimentRuntime.from_path(two, "centroid"))  # stored in the experiment's own cache folder
    with app_page(two, tmp_path / "wiseft-cache") as (page, _):
        expect(page.locator(".legendtext", has_text="WiSE-FT path").first).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_text("other fine-tuned endpoints (1 left)")).to_be_visible(timeout=WAIT_MS)
        assert page.locator('[data-testid="stTable"]').count() == 0  # not built while its box is closed
        page.get_by_text("Results table (top-1 %)").click()
        table = page.locator('[data-testid="stTable"]')
        expect(table).to_be_visible(timeout=WAIT_MS)
        assert table.locator("tbody tr").count() == 21  # one row per grid alpha
        expect(page.locator(".legendtext", has_text="WiSE-FT path: far").first).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_text("other fine-tuned endpoints (1 left)")).to_have_count(0)
