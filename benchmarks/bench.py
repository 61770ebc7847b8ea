"""The benchmark: interpolation, slider latency, sweep throughput, warm relaunch, the demo's full sweep, streaming.

Every comparison is a ratio of medians measured in this one process, with the variants run in turns so that
background load drifts hit all of them alike; only the streaming memory peaks come from fresh processes
(bench_stream.py). `python -m benchmarks.bench [--tiny] [--out FILE]`.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import itertools
import json
import operator
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from wiseft_explorer.core import ImageClassifier, WeightSpace, autocast, interpolate_state_dicts, pick_device
from wiseft_explorer.data import load_batch, preprocess_set
from wiseft_explorer.evaluation import ExperimentRuntime, predict_logits, run_sweep, summarise
from wiseft_explorer.experiment import Experiment, load_experiment
from wiseft_explorer.results import ALPHA_GRID
from wiseft_explorer.store import DiskCache
from wiseft_explorer.store.keys import _digest

from .bench_models import demo_experiment, vit_pair

# target name -> (figure, comparison, threshold, what it means)
TARGETS: dict[str, tuple[str, str, float, str]] = {
    "interp_vs_paper": ("interpolation.project_over_paper", "<=", 0.2, "project >= 5x faster than paper way"),
    "interp_vs_floor": ("interpolation.project_over_floor", "<=", 1.2, "project <= 1.2x flat-lerp floor"),
    "slider_demo": ("slider.demo_ms", "<=", 100.0, "slider latency, demo, 16 images (ms)"),
    "slider_vit": ("slider.vit_b32_ms", "<=", 300.0, "slider latency, ViT-B/32, 1 image (ms)"),
    "slider_demo_methods": ("slider.demo_methods_max_ms", "<=", 100.0, "slowest merge method's slider, demo (ms)"),
    "sweep_throughput": ("throughput.project_over_raw", ">=", 0.9, "sweep images/s vs raw encode_image loop"),
    "relaunch_speedup": ("relaunch.speedup", ">=", 20.0, "warm relaunch >= 20x faster than first sweep"),
    "relaunch_time": ("relaunch.warm_s", "<", 2.0, "warm relaunch on the demo (s)"),
    "demo_full_sweep": ("full_sweep.first_s", "<=", 60.0, "demo full sweep, 21 alphas x all sets (s)"),
    "stream_memory": ("memory.growth_mb", "<=", 300.0, "peak RSS, 20,000- minus 2,000-image sweep (MB)"),
    "stream_decodes": ("decodes.project_per_image", "<=", 1.0, "images decoded per image, 21-alpha sweep"),
    "stream_throughput": ("streaming.project_over_raw", ">=", 0.9, "streamed images x alpha/s vs raw forwards"),
    "merge_lines": ("merging.lines_over_lerp", "<=", 3.0, "LiNeS θ vs one WiSE-FT lerp (ViT-B/32)"),
    "merge_slerp": ("merging.slerp_over_lerp", "<=", 3.0, "SLERP θ vs one WiSE-FT lerp (ViT-B/32)"),
    "merge_model_stock": ("merging.model_stock_over_lerp", "<=", 3.0, "Model Stock θ vs one lerp (ViT-B/32)"),
    "distributed_scaling": ("distributed.speedup", ">=", 1.6, "sweep 2 vs 1 processes (gloo, CPU, 1 thread each)"),
    "cpu_peak": ("cpu.vit_b32_sweep_fraction_of_peak", ">=", 0.8, "21-alpha ViT-B/32 JPEG sweep FLOP/s / GEMM's"),
    "lc_sweep": ("lc_sweep.over_one_alpha", "<=", 1.2, "linear-classifier sweep time, 21 vs 1 alpha"),
    "lc_second_head": ("lc_sweep.second_head_forwards", "<=", 0.0, "forwards of a 2nd head over the same data"),
}
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt}



def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
          device: torch.device | None = None) -> dict[str, float]:
    """Median seconds of each function after warm-up, run in turns (a, b, c, a, b, c, ...)."""
    device = device or torch.device("cpu")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_interpolation(zs: ImageClassifier, ft: ImageClassifier, repeats: int) -> tuple[dict, Callable]:
    """theta_alpha into the working model: paper way, project way, and one lerp over flat buffers."""
    device = next(zs.parameters()).device
    space = WeightSpace(zs, ft)
    working = space.new_working()
    paper_model = copy.deepcopy(zs)  # the paper code loads into an ordinary model
    theta0, theta1 = zs.state_dict(), ft.state_dict()
    n = space.num_weights
    a, b, out = (torch.randn(n, device=device) for _ in range(3))
    alphas = itertools.cycle(ALPHA_GRID)  # consecutive alphas differ, so no call is skipped as unchanged
    fns = {"paper": lambda: paper_model.load_state_dict(interpolate_state_dicts(theta0, theta1, next(alphas))),
           "project": lambda: space.interpolate_into(working, next(alphas)),
           "floor": lambda: torch.lerp(a, b, next(alphas), out=out)}
    t = timed(fns, repeats, device=device)
    fig = {"weights": n, "paper_ms": t["paper"] * 1e3, "project_ms": t["project"] * 1e3,
           "floor_ms": t["floor"] * 1e3, "project_over_paper": t["project"] / t["paper"],
           "project_over_floor": t["project"] / t["floor"], "speedup_vs_paper": t["paper"] / t["project"]}
    return fig, lambda alpha: space.interpolate_into(working, alpha)


def bench_vit(tiny: bool, root: Path, device: torch.device, precision: str, repeats: int
              ) -> tuple[dict, dict, dict]:
    """Interpolation figures, the one-image slider latency and the merge methods on ViT-B/32 (memory freed after)."""
    from .bench_merging import bench_merging

    zs, ft, size = vit_pair(tiny, root, device)
    interpolation, interpolate = bench_interpolation(zs, ft, repeats)
    move = _slider(interpolate, torch.rand(1, 3, size, size), device, precision,
                   torch.zeros(1, dtype=torch.long), None)
    merging = bench_merging(zs, ft, repeats, timed)
    return interpolation, {"vit_b32_ms": timed({"vit": move}, repeats, device=device)["vit"] * 1e3}, merging


def _slider(interpolate: Callable[[float], ImageClassifier], images: torch.Tensor, device: torch.device,
            precision: str, labels: torch.Tensor, class_indices: torch.Tensor | None) -> Callable[[], object]:
    """One slider move: a new alpha, theta_alpha written, predictions (top-5 probabilities) updated."""
    alphas = itertools.cycle(ALPHA_GRID)

    def move() -> object:
        model = interpolate(next(alphas))
        return summarise(predict_logits(model, images, device, precision, len(images)), labels, class_indices,
                         probs=True)
    return move


def bench_relaunch(exp: Experiment, cache_dir: Path, repeats: int) -> tuple[dict, ExperimentRuntime]:
    """First sweep (empty cache, fresh runtime) vs warm relaunches (fresh runtime, everything from cache)."""
    start = time.perf_counter()
    first_rt = ExperimentRuntime(exp)
    first = run_sweep(first_rt, ALPHA_GRID, cache=DiskCache(cache_dir))
    first_s = time.perf_counter() - start
    warm, loaded = [], False
    for _ in range(repeats):
        _digest.cache_clear()  # a relaunched process has no memo of checkpoint hashes
        start = time.perf_counter()
        fresh = load_experiment(exp.path) if exp.path else exp  # reading the TOML is part of a relaunch
        runtime = ExperimentRuntime(dataclasses.replace(fresh, device=exp.device, precision=exp.precision))
        result = run_sweep(runtime, ALPHA_GRID, cache=DiskCache(cache_dir))
        warm.append(time.perf_counter() - start)
        loaded |= "models" in runtime.__dict__ or bool(runtime._sets)  # cached_property stores on first use
        if result.table().round(6).to_dict() != first.table().round(6).to_dict():
            raise RuntimeError("warm relaunch returned different results from the first sweep")
    warm_s = statistics.median(warm)
    evaluations = len(ALPHA_GRID) * len(first_rt.set_names)
    images = sum(len(first_rt.eval_set(n)) for n in first_rt.set_names) * len(ALPHA_GRID)
    return ({"full_sweep": {"first_s": first_s, "evaluations": evaluations, "images": images,
                            "sets": len(first_rt.set_names)},
             "relaunch": {"first_s": first_s, "warm_s": warm_s, "speedup": first_s / warm_s,
                          "warm_loaded_models_or_images": loaded}}, first_rt)


def bench_throughput(runtime: ExperimentRuntime, cache_root: Path, repeats: int) -> dict:
    """Images/s of the project's sweep on the ID set vs a raw encode_image loop, same tensors and batch size."""
    exp, device = runtime.experiment, runtime.device
    name = exp.id_set.name
    images = preprocess_set(runtime.eval_set(name), runtime.preprocess)  # for the raw loop, made before timing
    clip, batch = runtime.models.clip.model, exp.batch_size
    alphas = (0.25, 0.75)
    working = runtime.new_working()
    cache = DiskCache(cache_root / "throughput")

    def project() -> None:
        cache.clear()  # every alpha is computed, as in a first sweep
        run_sweep(runtime, alphas, sets=[name], cache=cache, working=working)

    @torch.inference_mode()
    def raw() -> None:
        with autocast(device, exp.precision):
            for _ in alphas:
                for start in range(0, len(images), batch):
                    clip.encode_image(images[start:start + batch].to(device)).float().cpu()
    t = timed({"project": project, "raw": raw}, repeats, device=device)
    n = len(images) * len(alphas)
    return {"set": name, "images": len(images), "batch_size": batch, "project_img_s": n / t["project"],
            "raw_img_s": n / t["raw"], "project_over_raw": t["raw"] / t["project"]}


def check_targets(figures: dict) -> dict[str, dict]:
    """Each target with its figure's value and pass/fail."""
    out = {}
    for name, (path, op, threshold, meaning) in TARGETS.items():
        section, key = path.split(".")
        value = figures[section][key]
        out[name] = {"figure": path, "op": op, "threshold": threshold, "value": value, "meaning": meaning,
                     "pass": bool(_OPS[op](value, threshold))}
    return out


def bench_demo(exp: Experiment, root: Path, repeats: int, tiny: bool) -> dict[str, dict]:
    """Full sweep, warm relaunch, slider latency (16 gallery images) and sweep throughput on the demo."""
    figures, runtime = bench_relaunch(exp, root / "sweep-cache", 2 if tiny else 3)
    ev = runtime.eval_set(exp.id_set.name)
    images, labels = load_batch(ev, range(16), runtime.preprocess)[0], ev.labels[:16]
    working = runtime.new_working()
    move = _slider(lambda a: runtime.classifier_at(working, a), images, runtime.device, exp.precision, labels,
                   ev.class_indices)
    figures["slider"] = {"demo_ms": timed({"demo": move}, repeats * 2, device=runtime.device)["demo"] * 1e3,
                         "demo_images": len(images)}
    from .bench_merging import method_sliders  # each merge method's slider on the same 16 images
    figures["slider"].update(method_sliders(runtime, images, labels, ev.class_indices, timed, repeats * 2))
    figures["throughput"] = bench_throughput(runtime, root, 2 if tiny else 3)
    return figures


def run(tiny: bool = False, device: str | None = None) -> dict:
    """Run every benchmark and return {"meta", "figures", "targets"}."""
    repeats, started = (2 if tiny else 5), time.perf_counter()
    dev = pick_device(device or "auto")
    precision = "bf16" if dev.type == "cuda" else "fp32"  # bf16 autocast on GPU (the GPU run)
    with tempfile.TemporaryDirectory(prefix="wiseft-bench-") as tmp:
        root = Path(tmp)
        interpolation, slider, merging = bench_vit(tiny, root, dev, precision, repeats)
        vit_s = time.perf_counter() - started
        exp, note = demo_experiment(root, tiny, device)
        if pick_device(exp.device).type == "cuda":
            exp = dataclasses.replace(exp, precision="bf16")
        figures = bench_demo(exp, root, repeats, tiny)
        demo_s = time.perf_counter() - started - vit_s
        from .bench_stream import run_stream  # imports this module: loaded here, not at the top

        figures.update(run_stream(root, tiny, str(dev), precision))
        from .bench_distributed import bench_scaling  # fresh torchrun process groups, timed inside

        figures["distributed"] = bench_scaling(root, tiny, repeats=1 if tiny else 2)
        from .bench_features import lc_sweep  # both import this module (`timed`; bench_stream)
        from .bench_peak import bench_cpu_peak

        figures["cpu"] = bench_cpu_peak(root, tiny)
        figures["lc_sweep"] = lc_sweep(root / "lc", images=48 if tiny else 256, side=(64, 48) if tiny else (500, 375),
                                       device=str(dev), precision=precision, repeats=1 if tiny else 2,
                                       workers=0 if tiny else None, tiny=tiny)
    figures["interpolation"] = interpolation
    figures["merging"] = merging
    figures["slider"].update(slider)
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "device": str(dev), "precision": precision,
            "tiny": tiny, "demo": note,
            "vit": "wiseft-bench-vit (tiny stand-in)" if tiny else "open_clip ViT-B-32, random weights",
            "seconds": {"vit": vit_s, "demo": demo_s, "stream": figures["stream_setup"]["seconds"],
                        "total": time.perf_counter() - started}}
    if dev.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(dev)
    return {"meta": meta, "figures": figures, "targets": check_targets(figures)}


def report(results: dict) -> str:
    """The printed table: every target, its value and pass/fail, then a one-line summary (last line)."""
    lines = [f"{'target':<18} {'value':>12} {'goal':>10}  result  meaning"]
    for name, t in results["targets"].items():
        lines.append(f"{name:<18} {t['value']:>12.4g} {t['op'] + format(t['threshold'], 'g'):>10}  "
                     f"{'PASS' if t['pass'] else 'FAIL':<6}  {t['meaning']}")
    f = results["figures"]
    lines.append(f"interpolation ms: paper {f['interpolation']['paper_ms']:.1f}, project "
                 f"{f['interpolation']['project_ms']:.1f}, floor {f['interpolation']['floor_ms']:.1f}; "
                 f"throughput img/s: project {f['throughput']['project_img_s']:.0f}, raw "
                 f"{f['throughput']['raw_img_s']:.0f}; relaunch s: first {f['relaunch']['first_s']:.2f}, "
                 f"warm {f['relaunch']['warm_s']:.3f}")
    from .bench_features import report_line as lc_line  # they import this module
    from .bench_peak import report_line as peak_line
    from .bench_stream import report_line

    lines += [report_line(f), peak_line(f), lc_line(f)]
    d = f["distributed"]
    lines.append(f"distributed sweep ({d['images']} images x 21 alphas, {d['model']}, gloo, 1 thread per process): "
                 f"1 process {d['one_s']:.1f} s, 2 processes {d['two_s']:.1f} s, speed-up {d['speedup']:.2f}x")
    meta = results["meta"]
    lines.append(f"demo: {meta['demo']}; threads {meta['threads']}, device {meta['device']}, "
                 f"{meta['seconds']['total']:.0f} s in all")
    passed = sum(t["pass"] for t in results["targets"].values())
    summary = ", ".join(f"{n} {'PASS' if t['pass'] else 'FAIL'}" for n, t in results["targets"].items())
    lines.append(f"{passed}/{len(results['targets'])} targets met{' (tiny: not meaningful)' * results['meta']['tiny']}"
                 f": {summary}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry: run, print the table, write the JSON; exit 1 if a target is missed (never in --tiny mode)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="seconds-long smoke run (figures not meaningful)")
    parser.add_argument("--out", default="bench-results.json", help="JSON file for the figures")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run(tiny=args.tiny, device=args.device)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    print(report(results))
    return 0 if args.tiny or all(t["pass"] for t in results["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
