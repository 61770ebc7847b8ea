"""The app over a streaming sweep: every alpha at once with 95% intervals, sharper as images stream in, the final
numbers at the end; the Gallery decodes only the thumbnails of the page it shows."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app import _figure, _metric_values, make_app_experiment
from tiny import write_folder

import wiseft_explorer.data.sets as data_module
from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep
from wiseft_explorer.store import DiskCache

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180


def make_streaming_experiment(root: Path, per_class: int = 150, batch: int = 4) -> Path:
    """The app's tiny experiment with a larger ID folder and small batches, so its sweep streams for seconds."""
    toml = make_app_experiment(root)
    big = write_folder(root / "big-id", per_class, seed=11)
    text = toml.read_text().replace('source = "id"', f'source = "{big}"', 1)
    toml.write_text(text.replace("batch_size = 8", f"batch_size = {batch}\nworkers = 1"))
    return toml


@pytest.fixture(scope="module")
def streaming_toml(tmp_path_factory) -> Path:
    return make_streaming_experiment(tmp_path_factory.mktemp("stream-app"))


def _notes(at: AppTest) -> list[str]:
    return [i.value for i in at.info]


def test_explorer_draws_every_alpha_with_intervals_then_reaches_the_final_numbers(streaming_toml, monkeypatch):
    monkeypatch.setenv("WISEFT_EXPERIMENT", str(streaming_toml))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    total = 3 * 150 + 10 + 18  # ID, Dark, Same
    first = " ".join(_notes(at))
    assert "being filled in" in first and f"of {total:,} images" in first, first
    # All 21 alphas are drawn from the first batches, each with its 95% interval (bands and error bars).
    acc = _figure(at, "acc_vs_alpha")
    curves = [t for t in acc["data"] if t.get("mode") == "lines+markers"]
    bands = [t for t in acc["data"] if t.get("fill") == "toself"]
    assert len(curves) == 3 and all(len(t["x"]) == 21 for t in curves)
    assert len(bands) == 3 and all(len(t["x"]) == 42 for t in bands)
    path = next(t for t in _figure(at, "id_vs_shift")["data"] if t.get("name", "").startswith("WiSE-FT path"))
    assert len(path["error_x"]["array"]) == 21 and len(path["error_y"]["array"]) == 21
    first_width = max(path["error_x"]["array"])
    deadline, widths = time.monotonic() + TIMEOUT, [first_width]
    while any("being filled in" in n for n in _notes(at)):
        assert time.monotonic() < deadline, "the sweep never finished in the app"
        time.sleep(1.0)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        path = next(t for t in _figure(at, "id_vs_shift")["data"] if t.get("name", "").startswith("WiSE-FT path"))
        widths.append(max(path["error_x"]["array"]))
    assert widths[-1] < first_width  # the intervals tightened as images streamed in
    runtime = ExperimentRuntime.from_path(streaming_toml)
    table = run_sweep(runtime, cache=DiskCache(streaming_toml.parent / "reference-cache")).table()
    values = _metric_values(at)
    assert values["ID at α = 0.5"] == f"{100 * table.loc[0.5, 'ID']:.1f}%"
    assert values["Shifts at α = 0.5"] == f"{100 * table.loc[0.5, 'avg_shifts']:.1f}%"
    stored = json.loads(next((runtime.experiment.cache_dir / "curves").glob("*.json")).read_text())
    assert stored["counts"]["ID"] == [450, 450]


def test_gallery_decodes_only_the_thumbnails_of_its_page(streaming_toml, monkeypatch):
    monkeypatch.setenv("WISEFT_EXPERIMENT", str(streaming_toml))
    runtime = ExperimentRuntime.from_path(streaming_toml)
    run_sweep(runtime)  # the sweep is done: the Gallery itself decodes nothing but thumbnails
    decoded: list[str] = []
    original = data_module.decode_image
    monkeypatch.setattr(data_module, "decode_image", lambda path, *a, **k: (decoded.append(str(path)),
                                                                           original(path, *a, **k))[1])
    at = AppTest.from_file(str(ROOT / "wiseft_explorer" / "ui" / "app" / "1_Gallery.py"), default_timeout=TIMEOUT)
    at.query_params["alpha"] = "0.5"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    thumbs = [m for m in at.markdown if m.value.startswith("**#")]
    assert len(thumbs) == 24  # one page of the 450-image ID set
    # 24 thumbnails plus the one image shown large in the probability-vs-alpha panel; never the whole set.
    assert 24 <= len(decoded) <= 25 and len(set(decoded)) <= 25
    at.number_input(key="gallery_page").set_value(2).run()
    assert not at.exception and len(decoded) <= 50


def test_an_off_grid_alpha_on_large_sets_is_estimated_on_a_fair_sample(streaming_toml, monkeypatch):
    from wiseft_explorer.evaluation import evaluate_at
    from wiseft_explorer.ui import results

    monkeypatch.setenv("WISEFT_EXPERIMENT", str(streaming_toml))
    monkeypatch.setattr(results, "LIVE_MAX_IMAGES", 50)
    runtime = ExperimentRuntime.from_path(streaming_toml)
    run_sweep(runtime)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.number_input(key="alpha_number").set_value(1.3)
    at.button(key="alpha_submit").click().run()
    assert not at.exception, [e.value for e in at.exception]
    expected = evaluate_at(runtime, 1.3, runtime.new_working(), max_images=50)
    assert expected["ID"].n == 50 and expected["Dark"].n == 10  # a sample of the big set, all of the small ones
    assert _metric_values(at)["ID at α = 1.3"] == f"{100 * expected['ID'].top1:.1f}%"
    assert any("fair sample of up to 50 images per set (78 of 478)" in c.value for c in at.caption)


def test_a_cold_start_shows_the_plane_while_it_waits_and_removes_it_with_the_curves(monkeypatch, tmp_path):
    # The empty ID-vs-shift plane is drawn before the wait for the first round (which also has the browser load
    # its charting script meanwhile) and its slot is emptied once the curves are drawn; not drawn once they exist.
    import wiseft_explorer.ui.figures as figures
    import wiseft_explorer.ui.results as results

    # An experiment of its own: the module's shared one has stored curves once another test has swept it.
    monkeypatch.setenv("WISEFT_EXPERIMENT", str(make_streaming_experiment(tmp_path, per_class=40)))
    events: list[str] = []
    frame, ensure = figures.waiting_frame, results.ensure_sweep
    monkeypatch.setattr(figures, "waiting_frame", lambda: (events.append("frame"), frame())[1])
    monkeypatch.setattr(results, "ensure_sweep", lambda *a, **k: (events.append("wait"), ensure(*a, **k))[1])
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    assert events == ["frame", "wait"]
    charts = [el.proto.id for el in at.get("plotly_chart")]
    assert len(charts) == 2 and not any("waiting_frame" in c for c in charts), charts  # the two real plots
    events.clear()
    at.run()  # the sweep has its first estimates now (or is finished and stored): no frame
    assert "frame" not in events and not at.exception
