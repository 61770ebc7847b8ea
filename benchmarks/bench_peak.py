"""Sweeps against the hardware's peak: FLOPs per image, the measured matmul peak, streamed ViT-B/32 sweeps.

Part of `python -m benchmarks.bench` (figure section `cpu`: a 21-alpha ViT-B/32 sweep over JPEGs, decoding
included, as a fraction of the GEMM peak measured in the same run) and the building blocks of `benchmarks/gpu.py`.
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from wiseft_explorer.core import load_checkpoint, save_checkpoint
from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep
from wiseft_explorer.experiment import load_experiment
from wiseft_explorer.results import ALPHA_GRID
from wiseft_explorer.store import DiskCache

from .bench_models import CLASSNAMES, jpeg_folders, stream_vit_config, write_models
from .bench_stream import Subject

VIT_B32 = "wiseft-bench-vitb32"  # open_clip's ViT-B-32 config under a name of our own (random weights)
CPU_IMAGES, TINY_IMAGES = 64, 32  # the CPU figure: 64 images x 21 alphas, about 75 s on 2 cores
JPEG_SIDE, TINY_SIDE = (500, 375), (64, 48)  # ImageNet-like photos; the tiny run's are small


def elapsed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median seconds of fn after warm-up: CUDA events around it on a GPU (synchronised), perf_counter on CPU."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end) / 1e3)
        else:
            begin = time.perf_counter()
            fn()
            times.append(time.perf_counter() - begin)
    return statistics.median(times)


def matmul_gflops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5) -> float:
    """The measured matmul peak: GFLOP/s of an n x n x n product in `dtype` (2 n^3 FLOPs), all cores or the GPU."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=dtype)
    seconds = elapsed(lambda: torch.mm(a, b, out=out), device, repeats)
    return 2 * n ** 3 / seconds / 1e9


def tower_gflop(visual: torch.nn.Module, size: int) -> float:
    """GFLOP of one image through the image tower (matmuls, convolutions, attention; 2 FLOPs per multiply-add).

    Counted on a CPU copy in training mode: in eval mode under no_grad, nn.MultiheadAttention takes a fused path
    that the counter does not see (5.9 instead of 8.7 GFLOP for ViT-B/32). The model has no dropout to matter.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counted = copy.deepcopy(visual).float().cpu().train()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        counted(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def vit_subject(root: Path, tiny: bool, device: str, precision: str, linear: bool = False) -> Subject:
    """ViT-B/32 (random weights; the 32-px test ViT when tiny) on disk; `linear`: a linear-classifier endpoint.

    The linear-classifier endpoint has the zero-shot image tower, unchanged, and a trained-like head, as after
    linear-classifier fine-tuning or a probe: every theta_alpha then has the same tower.
    """
    import open_clip

    name, config = stream_vit_config(True) if tiny else (VIT_B32, open_clip.get_model_config("ViT-B-32"))
    files = write_models(root, name, config, CLASSNAMES, ["a photo of a {}."])
    if linear:
        tower = {k: v for k, v in load_checkpoint(files[1])[0].items() if k.startswith("visual.")}
        tuned, metadata = load_checkpoint(files[2])
        path = save_checkpoint(root / "finetuned-linear.safetensors", tuned | tower, metadata)
        files = (files[0], files[1], path)
    return Subject(root, name, files, device, precision)


def jpegs(root: Path, n: int, tiny: bool) -> Path:
    """A folder of n generated photo-like JPEGs (10 classes)."""
    folder, _, _ = jpeg_folders(root, n, 0, TINY_SIDE if tiny else JPEG_SIDE)
    return folder


def sweep_rate(subject: Subject, folder: Path, n: int, alphas: Sequence[float], workers: int | None,
               batch_size: int | None = None, precision: str | None = None, repeats: int = 1) -> dict:
    """Images x alpha per second of a streamed sweep of n images (decoding included; models loaded beforehand).

    A first sweep at one alpha (16 images on CPU, a full batch on a GPU) warms up the loader, the batch workers and
    the device; each timed sweep starts from an empty cache.
    """
    subject = dataclasses.replace(subject, precision=precision or subject.precision)
    path = subject.experiment(f"peak-{subject.precision}-{len(alphas)}", folder, n, workers)
    exp = load_experiment(path)
    exp = dataclasses.replace(exp, batch_size=batch_size or exp.batch_size)
    runtime = ExperimentRuntime(exp)
    cache, working = DiskCache(subject.root / f"{path.stem}-cache"), runtime.new_working()

    def sweep(alphas: Sequence[float], limit: int | None = None) -> None:
        cache.clear()
        run_sweep(runtime, alphas, cache=cache, working=working, max_images=limit, resume=False)
    sweep([0.5], 16 if runtime.device.type == "cpu" else min(n, exp.batch_size))  # a GPU: full batches' kernels
    seconds = elapsed(lambda: sweep(alphas), runtime.device, repeats, warmup=0)
    return {"images": n, "alphas": len(alphas), "batch_size": exp.batch_size, "workers": runtime.workers,
            "precision": subject.precision, "seconds": seconds, "img_alpha_s": n * len(alphas) / seconds,
            "gflop_per_image": tower_gflop(runtime.models.zeroshot.visual, runtime.models.zeroshot.visual.image_size[0])}


def bench_cpu_peak(root: Path, tiny: bool) -> dict:
    """`cpu.vit_b32_sweep_fraction_of_peak`: a 21-alpha ViT-B/32 sweep of JPEGs x its FLOPs / the GEMM peak.

    Always on the CPU (the figure is the CPU's). The GEMM peak is the mean of one measurement before and one
    after the sweep, so that a change of the shared machine's speed during the run hits both sides alike.
    """
    n, gemm_n = (TINY_IMAGES, 512) if tiny else (CPU_IMAGES, 2048)
    subject = vit_subject(root / "peak-models", tiny, "cpu", "fp32")
    folder = jpegs(root / "peak-jpegs", n, tiny)
    before = matmul_gflops(torch.device("cpu"), n=gemm_n)
    sweep = sweep_rate(subject, folder, n, ALPHA_GRID, workers=0 if tiny else None)
    after = matmul_gflops(torch.device("cpu"), n=gemm_n)
    gemm = (before + after) / 2
    achieved = sweep["img_alpha_s"] * sweep["gflop_per_image"]
    return sweep | {"model": "tiny test ViT" if tiny else "open_clip ViT-B-32, random weights",
                    "gemm_gflops": gemm, "gemm_before_gflops": before, "gemm_after_gflops": after,
                    "sweep_gflops": achieved, "vit_b32_sweep_fraction_of_peak": achieved / gemm}


def report_line(figures: dict) -> str:
    """One printed line of the CPU peak figure."""
    c = figures["cpu"]
    return (f"cpu peak: {c['images']} JPEGs x {c['alphas']} alphas ({c['model']}) at {c['img_alpha_s']:.1f} "
            f"images x alpha/s x {c['gflop_per_image']:.3g} GFLOP = {c['sweep_gflops']:.0f} GFLOP/s; GEMM "
            f"{c['gemm_gflops']:.0f} GFLOP/s ({c['gemm_before_gflops']:.0f} before, {c['gemm_after_gflops']:.0f} "
            f"after): {c['vit_b32_sweep_fraction_of_peak']:.2f} of peak")
