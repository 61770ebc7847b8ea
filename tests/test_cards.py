"""The Explorer's cards, results table, alpha position and notes, computed without Streamlit."""

from __future__ import annotations

from wiseft_explorer.presentation import alpha_position, metric_cards, results_table, same_model_note
from wiseft_explorer.results import ALPHA_GRID, Curves


def _curves(ensemble_offset: float | None = None) -> Curves:
    top1s = {"ID": {a: 0.6 + 0.1 * a for a in ALPHA_GRID}, "ID-val": {a: 0.6 for a in ALPHA_GRID},
             "Sketch": {a: 0.5 - 0.2 * a for a in ALPHA_GRID}}
    errors = {"ID": {0.5: (0.008, 0.009)}, "avg_shifts": {0.5: (0.02, 0.03)}}
    ensemble = ({s: {a: v + ensemble_offset for a, v in by.items()} for s, by in top1s.items()}
                if ensemble_offset is not None else {})
    return Curves("ID", "ID-val", ["Sketch"], list(ALPHA_GRID), top1s, errors=errors,
                  counts={s: (1000, 1000) for s in top1s}, ensemble=ensemble)


def test_each_accuracy_appears_once_and_each_delta_says_against_what():
    curves = _curves()
    rows = metric_cards(curves, 0.5, curves.accuracies(0.5))
    assert [[c.label for c in row] for row in rows] == [
        ["ID at α = 0.5", "ID, zero-shot (α = 0)", "ID, fine-tuned (α = 1)"],
        ["Shifts at α = 0.5", "Shifts, zero-shot (α = 0)", "Shifts, fine-tuned (α = 1)"]]
    values = [c.value for row in rows for c in row]
    assert values == ["65.0%", "60.0%", "70.0%", "40.0%", "50.0%", "30.0%"]
    at, zs, ft = rows[0]
    assert at.delta is None
    assert (zs.delta, zs.delta_description) == ("+5.0 pts ± 0.8", "α = 0.5 vs this")
    assert (ft.delta, ft.delta_description) == ("-5.0 pts ± 0.9", "α = 0.5 vs this")
    assert rows[1][1].delta == "-10.0 pts ± 2.0" and "standard error" in rows[1][1].help
    # Off the grid (live accuracies): the deltas have no standard error; without shifts, one row.
    live = metric_cards(curves, 0.37, {"ID": 0.637, "ID-val": 0.6, "Sketch": 0.426, "avg_shifts": 0.426})
    assert live[0][1].delta == "+3.7 pts" and live[0][0].value == "63.7%"
    alone = Curves("ID", None, [], [0.0, 0.5, 1.0], {"ID": {0.0: 0.5, 0.5: 0.6, 1.0: 0.7}})
    assert len(metric_cards(alone, 0.5, alone.accuracies(0.5))) == 1


def test_results_table_shows_one_decimal_and_alpha_as_on_the_grid():
    table = results_table(_curves())
    assert list(table.index[:3]) == ["0.00", "0.05", "0.10"] and table.index.name == "α"
    assert table.loc["0.50", "ID"] == "65.0" and table.loc["1.00", "Sketch"] == "30.0"
    assert table.loc["0.05", "avg_shifts"] == "49.0"


def test_alpha_position_says_where_an_off_grid_or_extrapolated_alpha_is():
    assert alpha_position(0.35) is None and alpha_position(0.5000001) is None
    between = alpha_position(0.37)
    assert "between the grid values 0.35 and 0.40" in between and "nearest, 0.35" in between
    assert "nearest, 0.40" in alpha_position(0.38)
    above = alpha_position(1.5)
    assert "above the slider's range" in above and "0.5 beyond the fine-tuned model" in above
    assert "rests at 1.00" in above
    assert "below the slider's range" in alpha_position(-0.25) and "zero-shot" in alpha_position(-0.25)


def test_coinciding_weight_and_output_curves_are_explained_as_one_model():
    assert "same model" in same_model_note(_curves(0.0))
    assert "same model" in same_model_note(_curves(0.0004))
    assert same_model_note(_curves(0.01)) is None  # an end-to-end model's ensemble differs
    assert same_model_note(_curves()) is None  # no ensemble kept
