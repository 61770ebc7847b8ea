"""Smoke test of the benchmark: --tiny runs end to end and produces every figure (speed is never asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks import bench, gpu
from benchmarks.bench_peak import vit_subject

ROOT = Path(__file__).resolve().parent.parent  # `python -m benchmarks.bench` runs from the checkout
DIFFERENCES = {"memory.growth_mb"}  # a difference of two peaks: noise can make it zero or negative in --tiny mode
ZERO = {"lc_sweep.second_head_forwards"}  # counts whose target is zero


def _run_module(module: str, flag: str, out: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """`python -m MODULE FLAG --out OUT` from the checkout: its output and the JSON it wrote."""
    proc = subprocess.run([sys.executable, "-m", module, flag, "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc, json.loads(out.read_text())


def test_tiny_benchmark_produces_every_figure(tmp_path):
    # A fresh interpreter, as users run it: the library then sets its OpenMP policy before torch loads.
    proc, results = _run_module("benchmarks.bench", "--tiny", tmp_path / "bench.json")
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
    cpu = figures["cpu"]  # the CPU-peak figure: a 21-alpha sweep of JPEGs against a GEMM of the same run
    assert cpu["alphas"] == len(bench.ALPHA_GRID) and cpu["gemm_gflops"] > 0 and cpu["gflop_per_image"] > 0
    assert math.isclose(cpu["vit_b32_sweep_fraction_of_peak"],
                        cpu["img_alpha_s"] * cpu["gflop_per_image"] / cpu["gemm_gflops"])
    lc = figures["lc_sweep"]  # a second linear head over the same JPEGs: from the feature cache alone
    assert lc["second_head_forwards"] == 0 and lc["second_head_decodes"] == 0 and lc["over_one_alpha"] > 0
    lines = proc.stdout.strip().splitlines()
    passed = sum(t["pass"] for t in results["targets"].values())
    assert lines[-1].startswith(f"{passed}/{len(bench.TARGETS)} targets met")
    assert all(name in lines[-1] for name in bench.TARGETS)
    assert any(line.startswith("streaming: peak RSS") for line in lines)
    assert any(line.startswith("cpu peak: ") for line in lines)


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


def test_gpu_run_works_on_the_cpu(tmp_path):
    # `python -m benchmarks.gpu --cpu`: every step of the GPU run, tiny sizes, on the CPU (no GPU is needed).
    proc, results = _run_module("benchmarks.gpu", "--cpu", tmp_path / "gpu.json")
    f = results["figures"]
    assert results["meta"]["tiny"] is True and results["meta"]["device"] == "cpu"
    assert set(f["peak"]["matmul_gflops"]) == {"bf16", "fp32"} and f["peak"]["copy_gbs"] > 0
    for precision, sweep in f["sweep"].items():
        assert sweep["precision"] == precision and sweep["alphas"] == len(gpu.ALPHA_GRID)
        assert sweep["images"] == gpu.CPU.images and sweep["img_alpha_s"] > 0
        expected = sweep["img_alpha_s"] * sweep["gflop_per_image"] / f["peak"]["matmul_gflops"][precision]
        assert math.isclose(sweep["fraction_of_peak"], expected)
    lc = f["lc_sweep"]
    assert (lc["alphas_21"]["alphas"], lc["alphas_1"]["alphas"]) == (len(gpu.ALPHA_GRID), 1)
    assert lc["over_one_alpha"] > 0 and lc["effective_fraction_of_peak"] > 0
    assert f["interpolation"]["fraction_of_copy"] > 0 and f["slider"]["fraction_of_peak"] > 0
    lines = proc.stdout.splitlines()
    for start in ("sweep bf16", "sweep fp32", "linear-classifier sweep", "interpolation (", "slider ("):
        assert any(line.startswith(start) for line in lines), start
    assert "of the bf16 matmul peak" in proc.stdout and "of the fp32 matmul peak" in proc.stdout


def test_linear_subject_shares_the_zero_shot_tower(tmp_path):
    # The linear-classifier endpoint of the GPU run: the zero-shot image tower unchanged, the head trained-like.
    from wiseft_explorer.core import load_checkpoint

    subject = vit_subject(tmp_path, tiny=True, device="cpu", precision="fp32", linear=True)
    clip, (tuned, _) = load_checkpoint(subject.files[1])[0], load_checkpoint(subject.files[2])
    tower = [k for k in tuned if k.startswith("visual.")]
    assert tower and all(torch.equal(tuned[k], clip[k]) for k in tower)
    plain = load_checkpoint(vit_subject(tmp_path / "plain", True, "cpu", "fp32").files[2])[0]
    assert not all(torch.equal(plain[k], clip[k]) for k in tower)  # the end-to-end stand-in moves the tower
