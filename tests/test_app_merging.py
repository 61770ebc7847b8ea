"""The Explorer's merge methods (AppTest): the picker lists what the registry registers, each method's controls
move its point in the ID-vs-shift plot, the cards follow, the Gallery and Upload use the chosen θ, and no session
sees another's choice; methods an experiment cannot use are listed with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app import _figure, _metric_values, make_app_experiment
from test_endpoints import two_endpoint_experiment

from wiseft_explorer.core.merging import methods
from wiseft_explorer.evaluation import ExperimentRuntime, evaluate_at, run_sweep
from wiseft_explorer.evaluation.merging import with_method
from wiseft_explorer.evaluation.method_view import method_curves

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 300


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> Path:
    """The two-endpoint tiny experiment, its sweep done (a warm start)."""
    toml = two_endpoint_experiment(tmp_path_factory.mktemp("merge-app"))
    run_sweep(ExperimentRuntime.from_path(toml))
    return toml


def _explorer(toml: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("WISEFT_EXPERIMENT", str(toml))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    opener = [b for b in at.button if b.key == "merge_open"]  # a warm start loads no model until asked
    if opener:
        opener[0].click().run()
    return at


def _trace(at: AppTest, prefix: str) -> tuple[float, float] | None:
    for trace in _figure(at, "id_vs_shift")["data"]:
        if trace.get("name", "").startswith(prefix):
            return trace["x"][-1], trace["y"][-1]
    return None


def _expected(toml: Path, name: str, params: dict, alpha: float) -> dict[str, float]:
    runtime = ExperimentRuntime.from_path(toml)
    with runtime.borrow_working() as working:
        curves = method_curves(runtime, name, params, alpha, working)
    return curves.accuracies(curves.grid_alpha(alpha))


def test_each_method_is_listed_moves_its_point_and_the_cards_follow(two, monkeypatch):
    at = _explorer(two, monkeypatch)
    picker = at.selectbox(key="merge_method_pick")
    assert picker.value == "wiseft" and _trace(at, "SLERP") is None
    titles = {name: method.title for name, method in methods().items()}
    assert {titles[n] for n in ("soup", "model-stock", "slerp", "lines", "ties-trim", "dare")} <= set(picker.options)
    assert titles["fisher"] not in picker.options  # no Fisher files: listed with the command that makes them
    assert any("Fisher merging" in c.value and "wiseft-explorer fisher --experiment" in c.value for c in at.caption)
    moves = {"slerp": None, "model-stock": None, "lines": ("merge_lines_beta", 0.8), "soup": None,
             "ties-trim": ("merge_ties-trim_density", 0.9), "dare": ("merge_dare_density", 0.9)}
    for name, move in moves.items():
        at.selectbox(key="merge_method_pick").set_value(name).run()
        assert not at.exception, (name, [e.value for e in at.exception])
        title = titles[name]
        point = _trace(at, f"{title} at α = 0.5")
        assert point is not None, name
        expected = _expected(two, name, {}, 0.5)
        if name == "model-stock":  # its t per tensor, and where it lands beside the labelled best α
            assert _figure(at, "stock_ratios")["data"][0]["type"] == "bar"
            assert any(c.value.startswith(f"{title} lands (α = 1") for c in at.caption)
        assert _metric_values(at)["ID at α = 0.5"] == f"{100 * expected['ID']:.1f}%", name
        if move is not None:
            key, value = move
            at.slider(key=key).set_value(value).run()
            param = key.rsplit("_", 1)[1]
            moved = _expected(two, name, {param: value}, 0.5)
            assert _metric_values(at)["ID at α = 0.5"] == f"{100 * moved['ID']:.1f}%", name
            assert _trace(at, f"{title} at α = 0.5") != point or moved == expected, name
    at.slider(key="alpha_slider").set_value(1.0).run()  # the main α slider moves the method's point too
    assert _trace(at, f"{titles['dare']} at α = 1") is not None


def _page(toml: Path, page: str, monkeypatch, method: tuple[str, dict] | None = None) -> AppTest:
    monkeypatch.setenv("WISEFT_EXPERIMENT", str(toml))
    at = AppTest.from_file(str(ROOT / page), default_timeout=TIMEOUT)
    if method is not None:
        at.session_state["wiseft_method"] = method  # what the Explorer's picker leaves in this session's state
    return at.run()


def _tiles(at: AppTest) -> dict[int, str]:
    """Each gallery tile's image index and its α line."""
    return {int(m.value.split("**#")[1].split("**")[0]): m.value.split("α: ")[1].split("  \n")[0]
            for m in at.markdown if m.value.startswith("**#")}


def test_the_gallery_shows_the_chosen_methods_predictions_and_another_session_keeps_the_line(two, monkeypatch):
    gallery = "wiseft_explorer/ui/app/1_Gallery.py"
    at = _page(two, gallery, monkeypatch, ("lines", {"beta": 1.0}))
    assert not at.exception, [e.value for e in at.exception]
    assert any("Per-depth α (LiNeS)" in c.value for c in at.caption)
    runtime = ExperimentRuntime.from_path(two)
    merged = with_method(runtime, "lines", {"beta": 1.0})
    with runtime.borrow_working() as working:
        preds = evaluate_at(merged, 0.5, working, ["ID"])["ID"]
    names = runtime.experiment.classnames
    expected = {int(i): names[int(p)] for i, p in zip(preds.index, preds.pred, strict=True)}
    shown = _tiles(at)
    assert shown and all(shown[i] == expected[i] for i in shown)
    plain = run_sweep(runtime).predictions["ID"][0.5]
    line = {int(i): names[int(p)] for i, p in zip(plain.index, plain.pred, strict=True)}
    assert any(line[i] != expected[i] for i in shown)  # the method's column differs from the line's: can fail
    other = _page(two, gallery, monkeypatch)  # a second session: its own state, the straight line
    assert not any("Per-depth α (LiNeS)" in c.value for c in other.caption)
    assert all(_tiles(other)[i] == line[i] for i in _tiles(other))


def test_upload_predicts_with_the_chosen_method(two, monkeypatch):
    at = _page(two, "wiseft_explorer/ui/app/2_Upload.py", monkeypatch, ("slerp", {}))
    at.radio(key="upload_source").set_value("examples").run()
    ev = ExperimentRuntime.from_path(two).eval_set("ID")
    at.button(key=f"example_ID_{int(ev.order[0])}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [c.value for c in at.caption]
    assert any(c.startswith("SLERP at α = 0.5") for c in captions), captions


def test_methods_needing_two_endpoints_are_listed_with_the_reason(tmp_path, monkeypatch):
    one = make_app_experiment(tmp_path / "one")
    run_sweep(ExperimentRuntime.from_path(one))
    at = _explorer(one, monkeypatch)
    titles = {name: method.title for name, method in methods().items()}
    assert titles["model-stock"] not in at.selectbox(key="merge_method_pick").options
    assert any(c.value.startswith(f"~~{titles['model-stock']}~~") and "needs ≥ 2 fine-tuned endpoints" in c.value
               for c in at.caption)


def test_the_lines_expert_view_sets_one_offset_per_block_group(two, monkeypatch):
    at = _explorer(two, monkeypatch)
    at.selectbox(key="merge_method_pick").set_value("lines").run()
    at.toggle(key="merge_lines_expert").set_value(True).run()
    sliders = [s for s in at.slider if str(s.key).startswith("merge_lines_expert_")]
    assert len(sliders) >= 3 and [s.label for s in sliders][0] == "stem" and sliders[-1].label == "head end"
    sliders[-1].set_value(0.5).run()
    assert not at.exception, [e.value for e in at.exception]
    offsets = ",".join(["0"] * (len(sliders) - 1) + ["0.5"])
    assert at.session_state["wiseft_method"] == ("lines", {"offsets": offsets})
    expected = _expected(two, "lines", {"offsets": offsets}, 0.5)
    assert _metric_values(at)["ID at α = 0.5"] == f"{100 * expected['ID']:.1f}%"
    assert _trace(at, f"Per-depth α (LiNeS) at α = 0.5 (α offset per depth = {offsets})") is not None


def test_the_greedy_soup_says_what_it_kept_and_on_which_set(two, monkeypatch):
    from wiseft_explorer.evaluation.merging import greedy_soup

    at = _explorer(two, monkeypatch)
    at.selectbox(key="merge_method_pick").set_value("soup").run()
    at.selectbox(key="merge_soup_members").set_value("greedy").run()
    assert not at.exception, [e.value for e in at.exception]
    greedy = greedy_soup(ExperimentRuntime.from_path(two))
    names = ["centroid", "far"]
    line = f"Greedy soup: {', '.join(names[i] for i in greedy.chosen.members)}, chosen on {greedy.held_out}"
    assert any(c.value.startswith(line) for c in at.caption), [c.value for c in at.caption]
    assert any(("optimistic" in c.value) == greedy.optimistic for c in at.caption if c.value.startswith(line))


def test_fisher_merging_is_offered_once_its_fishers_exist(tmp_path, monkeypatch):
    """After `fisher` has run, the app uses the cached Fishers: the method is listed, picked, and its point and cards
    are the library's Fisher merge at α."""
    from wiseft_explorer.evaluation.fisher import compute_fishers

    toml = two_endpoint_experiment(tmp_path / "fisher")
    runtime = ExperimentRuntime.from_path(toml)
    run_sweep(runtime)
    compute_fishers(runtime)
    at = _explorer(toml, monkeypatch)
    title = methods()["fisher"].title
    assert title in at.selectbox(key="merge_method_pick").options
    at.selectbox(key="merge_method_pick").set_value("fisher").run()
    assert not at.exception, [e.value for e in at.exception]
    assert _trace(at, f"{title} at α = 0.5") is not None
    expected = _expected(toml, "fisher", {}, 0.5)
    assert _metric_values(at)["ID at α = 0.5"] == f"{100 * expected['ID']:.1f}%"
