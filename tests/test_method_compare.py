"""compare-methods: every merge method at its best held-out α against WiSE-FT's, with paired errors by hand."""

from __future__ import annotations

import math

import pytest
import torch

from wiseft_explorer.cli import main
from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep
from wiseft_explorer.evaluation.merging import with_method
from wiseft_explorer.evaluation.method_compare import compare_methods, format_comparison_markdown
from wiseft_explorer.results import MIN_DISAGREEING, alpha_choices

GRID = [0.0, 0.25, 0.5, 0.75, 1.0]


def _by_hand(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Paired difference of two per-image correctness vectors and its standard error, from the definition (no
    error while fewer than MIN_DISAGREEING images disagree, as the library says)."""
    d = a.double() - b.double()
    if int((d != 0).sum()) < MIN_DISAGREEING:
        return float(d.mean()), math.nan
    return float(d.mean()), float(d.std(unbiased=True) / math.sqrt(len(d)))


def _same(value: float, wanted: float) -> bool:
    return math.isnan(wanted) and math.isnan(value) or value == pytest.approx(wanted, rel=1e-6)


def test_rows_are_paired_per_image_against_wiseft_at_its_held_out_alpha(two):
    runtime = ExperimentRuntime.from_path(two)
    table = compare_methods(runtime, [("slerp", {}), ("model-stock", {}), ("fisher", {})], alphas=GRID)
    ref = run_sweep(runtime, GRID)
    ref_alpha = alpha_choices(ref)[0].alpha
    assert table.wiseft.alpha == ref_alpha and table.wiseft.id == ref.top1(ref.id_set, ref_alpha)
    slerp, stock, fisher = table.methods
    path = run_sweep(with_method(runtime, "slerp"), GRID)
    assert slerp.alpha == alpha_choices(path)[0].alpha
    here, there = path.predictions[ref.id_set][slerp.alpha], ref.predictions[ref.id_set][ref_alpha]
    diff, se = _by_hand(here.correct, there.correct)
    assert slerp.id_vs_wiseft.diff == pytest.approx(diff) and _same(slerp.id_vs_wiseft.se, se)
    # the shift average of per-set differences, errors in quadrature
    parts = [_by_hand(path.predictions[s][slerp.alpha].correct, ref.predictions[s][ref_alpha].correct)
             for s in ref.shift_sets]
    k = len(parts)
    assert slerp.shifts_vs_wiseft.diff == pytest.approx(sum(p[0] for p in parts) / k)
    assert _same(slerp.shifts_vs_wiseft.se, math.sqrt(sum(p[1] ** 2 for p in parts)) / k)
    assert not stock.skipped and stock.avg_shifts is not None
    assert "fisher" in fisher.skipped.lower()  # no Fishers computed: one line naming the command
    names = [row.estimator for row in table.label_free]
    assert names == ["Model Stock ratio t", "DaWin mean λ"]
    for row in table.label_free:
        assert row.d_alpha == pytest.approx(row.alpha - ref_alpha)
        assert row.d_id == pytest.approx(row.id - table.wiseft.id)
    text = format_comparison_markdown(table)
    assert "| slerp |" in text and "not run:" in text and "| DaWin mean λ |" in text


def test_cli_writes_the_tables(two, tmp_path, capsys):
    out = tmp_path / "methods.md"
    assert main(["compare-methods", "--experiment", str(two), "--methods", "slerp,soup", "--out", str(out)]) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out
    assert "| slerp |" in text and "soup (members=" in text and "| WiSE-FT |" in text
