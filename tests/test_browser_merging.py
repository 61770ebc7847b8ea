"""Real browser: pick each merge method in the Explorer, move its control, see its point move; the Gallery follows."""

from __future__ import annotations

import pytest
from browserkit import (
    CHROMIUM,
    WAIT_MS,
    app_page,
    server_log,
    wait_idle,
    wait_sweep_complete,
)
from test_endpoints import two_endpoint_experiment

from wiseft_explorer.core.merging import methods

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (installed by .ci/run)")

FIND_JS = """(prefix) => { for (const p of document.querySelectorAll('.js-plotly-plot')) {
    for (const t of (p.data || [])) { if ((t.name || '').startsWith(prefix)) return [t.name, t.x.at(-1), t.y.at(-1)]; } }
    return null; }"""
MOVED_JS = f"""([prefix, before]) => {{ const p = ({FIND_JS})(prefix);
    return p !== null && JSON.stringify(p) !== JSON.stringify(before); }}"""
# Each method and the control moved: a slider's label and key presses to the right (the α slider: 0.5 -> 0.7).
# The point is its trace's name (α and the controls' values) and position: on the tiny random model a control
# often leaves the accuracies where they were (test_app_merging checks the numbers against the library).
MOVES = {"slerp": ("α: 0 = zero-shot", 4), "model-stock": ("α: 0 = zero-shot", 4), "soup": ("α: 0 = zero-shot", 4),
         "lines": ("β", 40), "ties-trim": ("density", 60), "dare": ("density", 60)}


def _moved(page, prefix: str, before) -> list:
    """The method's point once it differs from `before` (None: once it is drawn)."""
    page.wait_for_function(MOVED_JS, arg=[prefix, before], timeout=WAIT_MS)
    return page.evaluate(FIND_JS, prefix)


def test_browser_picks_each_method_moves_its_point_and_the_gallery_follows(tmp_path):
    from playwright.sync_api import expect

    toml = two_endpoint_experiment(tmp_path)
    titles = {name: method.title for name, method in methods().items()}
    with app_page(toml, tmp_path / "cache") as (page, proc):
        wait_sweep_complete(page)
        page.get_by_text("Merge method: WiSE-FT's line").click()
        opener = page.get_by_role("button", name="Show the merge methods (loads the models)")
        if opener.is_visible():  # a warm start loads no model until asked
            opener.click()
        expect(page.get_by_text("needs the Fishers of θ₀ and θ₁")).to_be_visible(timeout=WAIT_MS)
        for name, (label, presses) in MOVES.items():
            page.locator('[data-testid="stSelectbox"]', has_text="Merge method").click()
            page.get_by_role("option", name=titles[name], exact=True).click()
            prefix = f"{titles[name]} at α = "
            before = _moved(page, prefix, None)
            wait_idle(page)
            box = page.locator('[data-testid="stSlider"]', has_text=label).first
            spec = next((p for p in methods()[name].params if p.label == label), None)
            if spec is not None:  # this method's own slider, drawn at its default (not the last method's value)
                expect(box).to_contain_text(f"{spec.default:.2f}", timeout=WAIT_MS)
            slider = box.locator('input[type="range"]')
            slider.first.focus()
            for _ in range(presses):
                page.keyboard.press("ArrowRight")
            after = _moved(page, prefix, before)
            assert after != before, name
            if label.startswith("α"):  # back to 0.5 for the next method
                slider.first.focus()
                for _ in range(presses):
                    page.keyboard.press("ArrowLeft")
                _moved(page, f"{titles[name]} at α = 0.5", None)
        page.get_by_role("link", name="Gallery").click()
        expect(page.get_by_text("The α column is")).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_text(titles["dare"]).first).to_be_visible(timeout=WAIT_MS)
    # The loaders' workers no longer run the app script again (each one logged 8 warnings: 72 kB in this test).
    assert "missing ScriptRunContext" not in server_log(proc)
