"""Plot builders: the paper's plot, accuracy vs alpha, probability vs alpha, axis scalings, paper data."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from wiseft_explorer.presentation import paper, plots


def _table() -> pd.DataFrame:
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    return pd.DataFrame({"ID": [0.6, 0.7, 0.8, 0.85, 0.86], "Sketch": [0.5, 0.55, 0.56, 0.52, 0.45],
                         "avg_shifts": [0.5, 0.55, 0.56, 0.52, 0.45]}, index=pd.Index(alphas, name="alpha"))


def _trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_id_vs_shift_marks_endpoints_path_and_current_alpha():
    fig = plots.id_vs_shift(_table(), "ID", "avg_shifts", 0.25)
    path = _trace(fig, "WiSE-FT path (α grid)")
    assert list(path.customdata) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert "α = 0.25" in path.hovertext[1]
    assert _trace(fig, "zero-shot (α = 0)").marker.symbol == "star"
    assert _trace(fig, "fine-tuned (α = 1)").marker.symbol == "diamond"
    current = _trace(fig, plots.CURRENT)
    assert (current.x[0], current.y[0]) == pytest.approx((70.0, 55.0))
    assert plots.current_alpha_of(fig) == 0.25


def test_off_grid_current_point_uses_the_given_accuracies():
    fig = plots.id_vs_shift(_table(), "ID", "Sketch", 1.3, current=(0.9, 0.4))
    current = _trace(fig, plots.CURRENT)
    assert (current.x[0], current.y[0]) == pytest.approx((90.0, 40.0))
    assert list(current.customdata) == [1.3]


@pytest.mark.parametrize("scale", ["logit", "probit"])
def test_nonlinear_scales_transform_points_and_label_ticks_in_percent(scale):
    fig = plots.id_vs_shift(_table(), "ID", "avg_shifts", 0.5, scale=scale)
    path = _trace(fig, "WiSE-FT path (α grid)")
    expected = math.log(0.6 / 0.4) if scale == "logit" else 0.2533471
    assert path.x[0] == pytest.approx(expected, rel=1e-5)
    ticks = fig.layout.xaxis.ticktext
    assert ticks and all(t.endswith("%") for t in ticks)
    assert fig.layout.xaxis.tickvals[list(ticks).index("80%")] == pytest.approx(plots.scale_value(0.8, scale))


def test_scale_value_clips_perfect_accuracy_and_rejects_unknown_scale():
    assert math.isfinite(plots.scale_value(1.0, "logit")) and math.isfinite(plots.scale_value(0.0, "probit"))
    with pytest.raises(ValueError, match="unknown axis scale"):
        plots.scale_value(0.5, "log")


def test_paper_overlay_is_labelled_per_model():
    fig = plots.id_vs_shift(_table(), "ID", "avg_shifts", 0.5, reference=paper.REFERENCE_POINTS)
    names = [t.name for t in fig.data if t.name.startswith("paper:")]
    assert names == [f"paper: {paper.VIT_L14_336} (Table 1)", f"paper: {paper.VIT_B16} (Table 5)"]
    vit_l = _trace(fig, names[0])
    assert (vit_l.x[0], vit_l.y[0]) == (76.2, 73.3)  # Table 1, zero-shot
    assert "Table 1" in vit_l.hovertext[0]


def test_paper_data_matches_the_published_tables():
    line = paper.wiseft_line(paper.VIT_B16)
    assert [(p.alpha, p.id_acc, p.avg_shifts) for p in line] == [
        (0.0, 68.3, 58.1), (0.4, 80.5, 63.5), (0.5, 81.7, 63.0), (1.0, 81.3, 53.8)]
    for p in paper.REFERENCE_POINTS:
        # Published averages are the mean of the five shifts (to rounding), except the per-column optimum row,
        # whose average has its own optimal alpha.
        if p.shifts and "optimal" not in p.label:
            assert sum(p.shifts) / 5 == pytest.approx(p.avg_shifts, abs=0.06)


def test_accuracy_vs_alpha_has_lines_choices_and_current_marker():
    choices = {"best_id_val": 1.0, "best_avg_shifts": 0.5, "paper_default": 0.5}
    fig = plots.accuracy_vs_alpha(_table(), ["ID", "Sketch"], 0.75, choices)
    assert [t.name for t in fig.data] == ["ID", "Sketch", "avg shifts"]
    assert plots.current_alpha_of(fig) == 0.75
    texts = [a.text for a in fig.layout.annotations]
    assert "best avg-shift α · paper default α" in texts and "best ID-val α" in texts
    dotted = [s.x0 for s in fig.layout.shapes if s.line.dash == "dot"]
    assert sorted(dotted) == [0.5, 1.0]
    # Every label has its own row above the plot area, so none covers a curve or another label.
    labels = fig.layout.annotations
    assert all(a.y == 1.0 and a.yanchor == "bottom" for a in labels) and len({a.yshift for a in labels}) == 3
    assert fig.layout.margin.t >= max(a.yshift for a in labels) + plots.ROW_PX
    # Chosen on the test set (no ID-val set): the plot says so.
    on_test = plots.accuracy_vs_alpha(_table(), ["ID"], 0.75, {"best_id_test": 1.0, "paper_default": 0.5})
    assert "best ID-test α (optimistic)" in [a.text for a in on_test.layout.annotations]


def test_probability_vs_alpha_draws_one_line_per_class():
    frame = pd.DataFrame({"alpha": [0, 1, 0, 1], "class": ["a", "a", "b", "b"], "probability": [.9, .2, .1, .8]})
    fig = plots.probability_vs_alpha(frame, 0.4, true_class="b")
    assert [t.name for t in fig.data] == ["a", "b (true)"]
    assert plots.current_alpha_of(fig) == 0.4


def test_no_curve_shares_the_current_alphas_red():
    """The current alpha's red marks alpha alone: no class line of the Upload chart, no set's curve is drawn in it."""
    classes = [f"class {i}" for i in range(12)]
    frame = pd.DataFrame({"alpha": [0, 1] * 12, "class": [c for c in classes for _ in (0, 1)],
                          "probability": [0.5] * 24})
    upload = plots.probability_vs_alpha(frame, 0.4, true_class="class 3")
    assert all(t.line.color != plots.CURRENT_COLOR for t in upload.data)
    assert [s.line.color for s in upload.layout.shapes] == [plots.CURRENT_COLOR]
    table = pd.concat([_table()] + [_table()["ID"].rename(f"S{i}") for i in range(10)], axis=1)
    curves = plots.accuracy_vs_alpha(table, ["ID", "Sketch", *(f"S{i}" for i in range(10))], 0.75,
                                     {"best_id_val": 1.0, "best_avg_shifts": 0.5, "paper_default": 0.5})
    assert all(t.line.color != plots.CURRENT_COLOR for t in curves.data if t.line is not None)
