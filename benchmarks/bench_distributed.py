"""Distributed benchmark: the sweep's speed-up from 1 to 2 processes (torchrun, gloo, one thread each).

Part of `python -m benchmarks.bench` (figure section `distributed`). Each run is a fresh process group,
`python -m benchmarks.bench_distributed time EXPERIMENT` under torchrun (or alone for 1 process), which
loads the models and indexes first and times only the 21-alpha sweep, from a common start to rank 0's results.
The model is the streaming benchmark's 224-px ViT on small JPEGs, so that the forwards, not decoding, set the pace.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from . import CHECKOUT
from .bench_models import CLASSNAMES, jpeg_folders, stream_vit_config, write_models


def scaling_experiment(root: Path, tiny: bool) -> tuple[Path, int]:
    """An experiment on the benchmark ViT and a generated JPEG folder; (its TOML, its number of images)."""
    images = 24 if tiny else 256
    name, config = stream_vit_config(tiny)
    config_path, zeroshot, finetuned = write_models(root / "dist-models", name, config, CLASSNAMES,
                                                    ["a photo of a {}."])
    folder = jpeg_folders(root / "dist-images", images, 1, (96, 72))[0]
    q = json.dumps
    toml = root / "distributed.toml"
    toml.write_text("\n".join([
        'name = "distributed scaling"', 'device = "cpu"', "batch_size = 32", "workers = 0",
        f"cache_dir = {q(str(root / 'dist-cache'))}", "", "[zeroshot]", f"model = {q(name)}",
        f"pretrained = {q(str(zeroshot))}", f"config = {q(str(config_path))}", "", "[finetuned]",
        f"checkpoint = {q(str(finetuned))}", "", "[classes]", f"names = {q(CLASSNAMES)}",
        'templates = ["a photo of a {}."]', "", "[id]", 'name = "ID"', f"source = {q(str(folder))}"]) + "\n")
    return toml, images


def run_timed(toml: Path, processes: int) -> float:
    """Seconds of one 21-alpha sweep by `processes` processes (1 thread each), as rank 0 measured it."""
    module = ["-m", "benchmarks.bench_distributed", "time", str(toml)]
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    run = subprocess.run([sys.executable, *launcher, *module], env=env, capture_output=True, text=True, check=False,
                         cwd=CHECKOUT)
    if run.returncode != 0:
        raise RuntimeError(f"the {processes}-process benchmark sweep failed: {run.stderr.strip()[-2000:]}")
    return float(json.loads(run.stdout.strip().splitlines()[-1])["seconds"])


def bench_scaling(root: Path, tiny: bool, repeats: int = 2) -> dict:
    """Median seconds of the sweep with 1 and with 2 processes, run in turns, and their ratio (the speed-up)."""
    toml, images = scaling_experiment(root, tiny)
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for processes in times:
            times[processes].append(run_timed(toml, processes))
    one, two = sorted(times[1])[len(times[1]) // 2], sorted(times[2])[len(times[2]) // 2]
    return {"images": images, "alphas": 21, "model": stream_vit_config(tiny)[0], "backend": "gloo",
            "threads_per_process": 1, "one_s": one, "two_s": two, "speedup": one / two,
            "images_alpha_per_s_one": images * 21 / one, "images_alpha_per_s_two": images * 21 / two}


def time_sweep(toml: str) -> dict:
    """In one rank of the job: load everything, start together, time the sweep (a fresh cache) to the results."""
    from wiseft_explorer.core import all_reduce_sum, process_group
    from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep, run_sweep_distributed
    from wiseft_explorer.store import DiskCache

    torch.set_num_threads(1)
    with process_group("cpu") as group, tempfile.TemporaryDirectory(prefix="wiseft-dist-bench-") as tmp:
        runtime = ExperimentRuntime.from_path(toml)
        runtime.space  # noqa: B018 - models and weight line loaded before timing (cached_property)
        for name in runtime.set_names:
            runtime.eval_set(name)
        cache = DiskCache(tmp)
        all_reduce_sum(group, torch.zeros(1))  # every rank ready: the clock starts together
        start = time.perf_counter()
        if group.distributed:
            run_sweep_distributed(runtime, group, cache=cache)
        else:
            run_sweep(runtime, cache=cache)
        all_reduce_sum(group, torch.zeros(1))
        return {"seconds": time.perf_counter() - start, "processes": group.world_size, "root": group.is_root}


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.bench_distributed time EXPERIMENT`: one timed sweep; rank 0 prints its JSON last."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_distributed")
    parser.add_argument("command", choices=["time"])
    parser.add_argument("experiment")
    args = parser.parse_args(argv)
    figures = time_sweep(args.experiment)
    if figures.pop("root"):
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
