"""The GPU run: ViT-B/32 sweeps, interpolation and the slider, each against the GPU's measured peak.

`python -m benchmarks.gpu [--out FILE]` on one CUDA GPU (under 5 minutes); `--cpu` runs the same steps on the CPU
with tiny sizes (seconds, figures not meaningful), which is how its test proves it works where no GPU is lent.
Everything goes through the library as a user's sweep does (pinned batches, channels-last, autocast with the head
in fp32); the peaks are measured in the same run: a square matmul in bf16 and in fp32, and a device-memory copy.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from wiseft_explorer.results import ALPHA_GRID

from .bench import bench_vit
from .bench_peak import elapsed, jpegs, matmul_gflops, sweep_rate, vit_subject


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes of a run: the GPU's, or the CPU check's (tiny model, tiny JPEGs)."""

    images: int  # JPEGs streamed by every sweep
    batch_size: int
    workers: int | None  # decoding processes (None: the library's default, one per core less one, at most 8)
    matmul_n: int  # side of the square matmul that measures the peak
    repeats: int  # timed repeats of each sweep (median)
    tiny: bool


GPU = Plan(images=2048, batch_size=256, workers=None, matmul_n=8192, repeats=2, tiny=False)
CPU = Plan(images=16, batch_size=16, workers=0, matmul_n=256, repeats=1, tiny=True)
PRECISIONS = ("bf16", "fp32")  # the matmul peak each sweep is compared with has the sweep's own dtype
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def copy_gbs(device: torch.device, floats: int) -> float:
    """GB/s of a device-memory copy of `floats` fp32 values (bytes read + bytes written): the floor of a lerp."""
    source, target = torch.randn(floats, device=device), torch.empty(floats, device=device)
    return 2 * 4 * floats / elapsed(lambda: target.copy_(source), device, 5) / 1e9


def run(cpu: bool) -> dict:
    """Every figure of the GPU run (on the CPU, tiny, with `cpu`), with each one's fraction of the measured peak."""
    if not cpu and not torch.cuda.is_available():
        raise SystemExit("benchmarks.gpu: no CUDA device is visible (torch.cuda.is_available() is False); run it "
                         "on a GPU machine, or pass --cpu for the seconds-long check on the CPU")
    plan, device = (CPU, torch.device("cpu")) if cpu else (GPU, torch.device("cuda"))
    started = time.perf_counter()
    peaks = {p: matmul_gflops(device, DTYPES[p], plan.matmul_n, repeats=10) for p in PRECISIONS}
    with tempfile.TemporaryDirectory(prefix="wiseft-gpu-") as tmp:
        root = Path(tmp)
        folder = jpegs(root / "jpegs", plan.images, plan.tiny)
        subject = vit_subject(root / "vit", plan.tiny, str(device), "bf16")
        sweeps = {p: sweep_rate(subject, folder, plan.images, ALPHA_GRID, plan.workers, plan.batch_size, p,
                                plan.repeats) for p in PRECISIONS}
        linear = vit_subject(root / "linear", plan.tiny, str(device), "bf16", linear=True)
        lc = {"alphas_21": sweep_rate(linear, folder, plan.images, ALPHA_GRID, plan.workers, plan.batch_size,
                                      repeats=plan.repeats),
              "alphas_1": sweep_rate(linear, folder, plan.images, [0.5], plan.workers, plan.batch_size,
                                     repeats=plan.repeats)}
        interpolation, slider, _merging = bench_vit(plan.tiny, root, device, "bf16", repeats=5)
    gflop = sweeps["bf16"]["gflop_per_image"]
    bandwidth = copy_gbs(device, interpolation["weights"])
    figures = {
        "peak": {"matmul_gflops": peaks, "matmul_n": plan.matmul_n, "copy_gbs": bandwidth},
        "sweep": {p: s | {"fraction_of_peak": s["img_alpha_s"] * gflop / peaks[p]} for p, s in sweeps.items()},
        "lc_sweep": lc | {"over_one_alpha": lc["alphas_21"]["seconds"] / lc["alphas_1"]["seconds"],
                          # above 1 once features are computed once per image for identical towers
                          "effective_fraction_of_peak": lc["alphas_21"]["img_alpha_s"] * gflop / peaks["bf16"]},
        "interpolation": interpolation | {"project_gbs": 12 * interpolation["weights"] / interpolation["project_ms"]
                                          / 1e6},
        "slider": slider | {"fraction_of_peak": gflop / (slider["vit_b32_ms"] / 1e3) / peaks["bf16"]},
    }
    figures["interpolation"]["fraction_of_copy"] = figures["interpolation"]["project_gbs"] / bandwidth
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (--cpu check)",
            "torch": torch.__version__, "tiny": plan.tiny, "plan": dataclasses.asdict(plan),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "seconds": time.perf_counter() - started}
    return {"meta": meta, "figures": figures}


def report(results: dict) -> str:
    """The printed lines: each figure and how far it is from the measured peak."""
    f, meta = results["figures"], results["meta"]
    peaks = f["peak"]["matmul_gflops"]
    lines = [f"{meta['device_name']} ({meta['device']}), torch {meta['torch']}; measured matmul peak "
             f"({f['peak']['matmul_n']}^3): bf16 {peaks['bf16'] / 1e3:.3g} TFLOP/s, fp32 {peaks['fp32'] / 1e3:.3g} "
             f"TFLOP/s; copy {f['peak']['copy_gbs']:.3g} GB/s"]
    for p, s in f["sweep"].items():
        lines.append(f"sweep {p:<5} {s['images']} JPEGs x {s['alphas']} alphas: {s['img_alpha_s']:.0f} images x "
                     f"alpha/s ({s['seconds']:.1f} s, {s['gflop_per_image']:.3g} GFLOP/image) = "
                     f"{s['fraction_of_peak']:.2f} of the {p} matmul peak")
    lc = f["lc_sweep"]
    lines.append(f"linear-classifier sweep (identical towers, bf16): 21 alphas {lc['alphas_21']['seconds']:.2f} s, "
                 f"1 alpha {lc['alphas_1']['seconds']:.2f} s, ratio {lc['over_one_alpha']:.2f}; "
                 f"{lc['alphas_21']['img_alpha_s']:.0f} images x alpha/s = {lc['effective_fraction_of_peak']:.2f} "
                 "of the bf16 peak (effective)")
    i = f["interpolation"]
    lines.append(f"interpolation ({i['weights'] / 1e6:.1f} M weights): {i['project_ms']:.2f} ms, bare lerp "
                 f"{i['floor_ms']:.2f} ms, paper's way {i['paper_ms']:.2f} ms; {i['project_gbs']:.0f} GB/s = "
                 f"{i['fraction_of_copy']:.2f} of the copy bandwidth")
    lines.append(f"slider (1 image, bf16): {f['slider']['vit_b32_ms']:.1f} ms = {f['slider']['fraction_of_peak']:.4f} "
                 f"of the bf16 peak (latency-bound)")
    lines.append(f"{meta['seconds']:.0f} s in all{' (--cpu: tiny sizes, figures not meaningful)' * meta['tiny']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry: run, print the figures, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="the same steps on the CPU, tiny sizes (seconds)")
    parser.add_argument("--out", default="gpu-results.json", help="JSON file for the figures")
    args = parser.parse_args(argv)
    results = run(args.cpu)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
