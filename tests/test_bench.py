"""Smoke test of the benchmark: --tiny runs end to end and produces every figure (speed is never asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from benchmarks import bench

ROOT = Path(__file__).resolve().parent.parent  # `python -m benchmarks.bench` runs from the checkout
DIFFERENCES = {"memory.growth_mb"}  # a difference of two peaks: noise can make it zero or negative in --tiny mode
ZERO = {"lc_sweep.second_head_forwards"}  # counts whose target is zero


def test_tiny_benchmark_produces_every_figure(tmp_path):
    # A fresh interpreter, as users run it: the library then sets its OpenMP policy before torch loads.
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench", "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["meta"]["tiny"] is True
    assert set(results["targets"]) == set(bench.TARGETS)
    for name, (path, op, threshold, _) in bench.TARGETS.items():
        section, key = path.split(".")
        value = results["figures"][section][key]
        assert isinstance(value, (int, float)) and math.isfinite(value), (name, value)
        assert value > 0 or path in DIFFERENCES | ZERO, (name, value)
        target = results["targets"][name]
        assert (target["value"], target["op"], target["threshold"]) == (value, op, threshold)
        assert target["pass"] == bench._OPS[op](value, threshold)
    figures = results["figures"]
    assert figures["interpolation"]["paper_ms"] > 0 and figures["interpolation"]["floor_ms"] > 0
    assert figures["slider"]["demo_images"] == 16
    assert figures["distributed"]["one_s"] > 0 and figures["distributed"]["two_s"] > 0  # both torchrun sizes ran
    assert figures["relaunch"]["warm_loaded_models_or_images"] is False  # a warm relaunch reads only the cache
    assert figures["full_sweep"]["evaluations"] == len(bench.ALPHA_GRID) * figures["full_sweep"]["sets"]
    _check_streaming(figures)
    lc = figures["lc_sweep"]  # a second linear head over the same JPEGs: from the feature cache alone
    assert lc["second_head_forwards"] == 0 and lc["second_head_decodes"] == 0 and lc["over_one_alpha"] > 0
    lines = proc.stdout.strip().splitlines()
    passed = sum(t["pass"] for t in results["targets"].values())
    assert lines[-1].startswith(f"{passed}/{len(bench.TARGETS)} targets met")
    assert all(name in lines[-1] for name in bench.TARGETS)
    assert any(line.startswith("streaming: peak RSS") for line in lines)


def _check_streaming(figures: dict) -> None:
    """The streaming section: both memory runs, decodes counted (not timed, so exact), every throughput variant."""
    memory, decodes, streaming = figures["memory"], figures["decodes"], figures["streaming"]
    for label in ("small", "big"):
        assert memory[f"{label}_peak_mb"] > 0 and memory[f"{label}_img_s"] > 0
        assert memory[f"{label}_at_peak"]["processes"] >= 1 and len(memory[f"{label}_peak_by_quarter_mb"]) == 4
    assert memory["big_images"] > memory["small_images"]
    n = decodes["images"]
    assert (decodes["project_decodes"], decodes["paper_decodes"]) == (n, len(bench.ALPHA_GRID) * n)
    assert decodes["project_per_image"] == 1.0 and decodes["same_top1"] is True
    for prefix in ("", "few_"):
        for key in ("project_img_alpha_s", "raw_img_alpha_s", "project_over_raw"):
            assert streaming[prefix + key] > 0, prefix + key
    assert streaming["alphas"] == len(bench.ALPHA_GRID) and streaming["first_results_s"] > 0
