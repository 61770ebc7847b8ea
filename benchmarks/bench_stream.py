"""Streaming benchmarks: memory of a 20,000-image sweep, decodes per 21-alpha sweep, throughput with decoding.

Part of `python -m benchmarks.bench` (figure sections `memory`, `decodes`, `streaming`). The memory figures
come from fresh processes, `python -m benchmarks.bench_stream sweep EXPERIMENT`, whose process tree (the sweep
and its decoding workers) is polled for resident memory while it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

from wiseft_explorer.core import autocast
from wiseft_explorer.data import DecodeCounter, load_batch, preprocess_set
from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep
from wiseft_explorer.experiment import load_experiment
from wiseft_explorer.results import ALPHA_GRID
from wiseft_explorer.store import DiskCache

from . import CHECKOUT
from .bench import timed
from .bench_models import CLASSNAMES, jpeg_folders, stream_vit_config, write_models

MB = 1024 * 1024


@dataclass(frozen=True)
class Scale:
    """Sizes of the streaming benchmark: the full run, or --tiny (seconds; figures not meaningful)."""

    big: int  # images in the large folder (memory)
    small: int  # images in the small folder, the first `small` of the large one (hard links)
    side: tuple[int, int]  # JPEG width, height
    decode_images: int  # images of the 21-alpha decode count
    throughput_images: int  # streamed at the full 21-alpha grid (the target) and at `few_alphas`
    few_alphas: tuple[float, ...]
    repeats: int
    workers: int | None = None  # decoding workers of the in-process sweeps (None: the experiment's default)


# Throughput: 256 images x 21 alphas is about 5,400 forwards per run, some 13 s on 2 cores with this model. The
# target is the full grid, what a sweep runs; both ends and the middle (the app's first curves) show the cost of
# decoding when it is shared by few alphas.
FULL = Scale(20_000, 2_000, (500, 375), 200, 256, (0.0, 0.5, 1.0), 2)
# --tiny decodes in-process outside the memory runs: a loader's workers take about 1.5 s to start (they import
# open_clip to unpickle the transform), which would make the 20-odd sweeps of the smoke test take a minute.
TINY = Scale(240, 48, (64, 48), 16, 48, (0.0, 1.0), 2, workers=0)


@dataclass(frozen=True)
class Subject:
    """The benchmark's model files on one device; an experiment (ID set = one folder) made from them on demand."""

    root: Path
    model: str
    files: tuple[Path, Path, Path]  # config, zero-shot CLIP, fine-tuned classifier
    device: str
    precision: str

    def experiment(self, name: str, folder: Path, limit: int | None = None, workers: int | None = None) -> Path:
        """An experiment TOML on these models and `folder`, with its own cache folder."""
        q, (config, zeroshot, finetuned) = json.dumps, self.files
        lines = [f"name = {q(name)}", f"device = {q(self.device)}", f"precision = {q(self.precision)}",
                 f"cache_dir = {q(str(self.root / f'cache-{name}'))}", "", "[zeroshot]", f"model = {q(self.model)}",
                 f"pretrained = {q(str(zeroshot))}", f"config = {q(str(config))}", "", "[finetuned]",
                 f"checkpoint = {q(str(finetuned))}", "", "[classes]", f"names = {q(CLASSNAMES)}",
                 'templates = ["a photo of a {}."]', "", "[id]", 'name = "ID"', f"source = {q(str(folder))}"]
        path = self.root / f"{name}.toml"
        lines[4:4] = [f"workers = {workers}"] if workers is not None else []
        path.write_text("\n".join(lines + ([f"limit = {limit}"] if limit else [])) + "\n")
        return path

    def runtime(self, name: str, folder: Path, limit: int | None = None, workers: int | None = None,
                ) -> ExperimentRuntime:
        """A fresh runtime of `experiment(...)`."""
        return ExperimentRuntime(load_experiment(self.experiment(name, folder, limit, workers)))


def tree_peak(command: list[str], log: Path, interval: float = 0.05) -> dict:
    """Run a command, polling the resident memory of it and every descendant; the peaks and the command's JSON."""
    roles = ("sweep", "helpers", "workers")  # the process, its children (forkserver, ...), their children (workers)
    samples: list[tuple[float, int]] = []
    peak, parts, pss, pss_at = 0, {}, 0, 0.0
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=CHECKOUT)
        top, start = psutil.Process(proc.pid), time.perf_counter()
        while proc.poll() is None:
            try:
                tree = [(0, top)] + [(1 if c.ppid() == proc.pid else 2, c) for c in top.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            sizes = dict.fromkeys(roles, 0)
            for depth, p in tree:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    sizes[roles[depth]] += p.memory_info().rss
            samples.append((time.perf_counter() - start, sum(sizes.values())))
            if samples[-1][1] > peak:
                peak, parts = samples[-1][1], {f"{k}_mb": v / MB for k, v in sizes.items()} | {"processes": len(tree)}
            if samples[-1][0] - pss_at > 0.5:  # PSS splits shared pages between processes; reading smaps is slower
                pss_at, now = samples[-1][0], 0
                for _, p in tree:
                    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                        now += p.memory_full_info().pss
                pss = max(pss, now)
            time.sleep(interval)
        proc.wait()
    text = log.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed ({proc.returncode}): {text[-1500:]}")
    # The peak in each quarter of the run: a leak climbs from quarter to quarter, batches in flight do not.
    end = samples[-1][0] if samples else 1.0
    quarters = [max((v for t, v in samples if i * end / 4 <= t <= (i + 1) * end / 4), default=0) / MB
                for i in range(4)]
    return {"peak_mb": peak / MB, "pss_peak_mb": pss / MB, "polls": len(samples), "at_peak": parts,
            "peak_by_quarter_mb": quarters, "result": json.loads(text.splitlines()[-1])}


def bench_memory(subject: Subject, folders: dict[int, Path]) -> dict:
    """Peak RSS of the sweep's process tree over the large folder minus over the small one, each in a new process."""
    out: dict = {"alphas": [0.5]}  # one alpha: the time is in forwards, and per-alpha memory is 22 B per image
    for label, (n, folder) in zip(("small", "big"), sorted(folders.items()), strict=True):
        command = [sys.executable, "-m", "benchmarks.bench_stream", "sweep",
                   str(subject.experiment(f"memory-{n}", folder)), "--alphas", "0.5",
                   "--threads", str(torch.get_num_threads())]
        got = tree_peak(command, subject.root / f"memory-{n}.log")
        out.update({f"{label}_images": n, f"{label}_peak_mb": got["peak_mb"], f"{label}_pss_peak_mb": got["pss_peak_mb"],
                    f"{label}_img_s": got["result"]["images_per_s"], f"{label}_sweep_s": got["result"]["seconds"],
                    f"{label}_at_peak": got["at_peak"], f"{label}_peak_by_quarter_mb": got["peak_by_quarter_mb"]})
    out["growth_mb"] = out["big_peak_mb"] - out["small_peak_mb"]
    out["growth_pss_mb"] = out["big_pss_peak_mb"] - out["small_pss_peak_mb"]
    return out


def bench_decodes(subject: Subject, folder: Path, n: int, workers: int | None = None) -> dict:
    """Images loaded by one 21-alpha sweep vs the paper's way (a pass over the data per alpha), both counted."""
    runtime, root = subject.runtime("decodes", folder, n, workers), subject.root
    name = runtime.set_names[0]
    start, project = time.perf_counter(), DecodeCounter()
    result = run_sweep(runtime, ALPHA_GRID, cache=DiskCache(root / "decodes-project"), resume=False,
                       counter=project)
    project_s, paper, same = time.perf_counter() - start, DecodeCounter(), True
    start = time.perf_counter()
    for i, alpha in enumerate(ALPHA_GRID):  # a fresh cache per alpha: nothing is shared between the passes
        one = run_sweep(runtime, [alpha], cache=DiskCache(root / f"decodes-paper-{i}"), resume=False, counter=paper)
        same &= one.top1(name, alpha) == result.top1(name, alpha)
    return {"images": n, "alphas": len(ALPHA_GRID), "project_decodes": project.count, "paper_decodes": paper.count,
            "project_per_image": project.count / n, "paper_per_image": paper.count / n, "same_top1": bool(same),
            "project_s": project_s, "paper_s": time.perf_counter() - start}


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Torch ops on one thread, as in a decoding worker (torch sets that there)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def bench_streaming(subject: Subject, folder: Path, scale: Scale) -> dict:
    """Images x alphas per second of streaming sweeps (21 and few alphas) vs raw forwards over pre-decoded tensors."""
    n, precision = scale.throughput_images, subject.precision
    runtime = subject.runtime("streaming", folder, n, scale.workers)
    ev, classifier, batch = runtime.eval_set(runtime.set_names[0]), runtime.models.zeroshot, runtime.experiment.batch_size
    with _one_thread():
        images = preprocess_set(ev, runtime.preprocess)  # for the raw loop, made before timing
        start = time.perf_counter()
        load_batch(ev, range(min(n, 64)), runtime.preprocess)
        decode_ms = (time.perf_counter() - start) / min(n, 64) * 1e3
    dev, working, cache = runtime.device, runtime.new_working(), DiskCache(subject.root / "streaming-cache")
    first_results: list[float] = []

    def project(alphas: Sequence[float]) -> Callable[[], None]:
        def sweep() -> None:
            cache.clear()  # every alpha is computed, as in a first sweep
            start, first = time.perf_counter(), list[float]()

            def first_progress(*_: object) -> None:
                if not first:
                    first.append(time.perf_counter() - start)

            run_sweep(runtime, alphas, cache=cache, working=working, resume=False, on_progress=first_progress)
            if len(alphas) < len(ALPHA_GRID):  # with few alphas the first batch's forwards take little time
                first_results.append(first[0])
        return sweep

    def raw(alphas: Sequence[float]) -> Callable[[], None]:
        @torch.inference_mode()
        def forwards() -> None:
            with autocast(dev, precision):
                for _ in alphas:  # one set of weights serves every alpha: the floor has no interpolation either
                    for start in range(0, n, batch):
                        classifier(images[start:start + batch].to(dev)).float().cpu()
        return forwards
    few = scale.few_alphas
    t = timed({"project": project(ALPHA_GRID), "raw": raw(ALPHA_GRID), "few_project": project(few),
               "few_raw": raw(few)}, scale.repeats, device=dev)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # Core-ms of one forward: the raw loop keeps every core busy on CPU (no such figure on a GPU).
    forward_core_ms = t["raw"] / (n * len(ALPHA_GRID)) * 1e3 * cores if dev.type == "cpu" else 0.0
    out = {"images": n, "alphas": len(ALPHA_GRID), "few_alphas": list(few), "batch_size": batch,
           "workers": runtime.workers, "decode_ms": decode_ms, "forward_core_ms": forward_core_ms,
           # from the call to the first batch's results: loader and worker start, 32 images decoded and evaluated
           "first_results_s": statistics.median(first_results)}
    for prefix, alphas in (("", ALPHA_GRID), ("few_", few)):
        work = n * len(alphas)
        out |= {f"{prefix}project_img_alpha_s": work / t[f"{prefix}project"],
                f"{prefix}raw_img_alpha_s": work / t[f"{prefix}raw"],
                f"{prefix}project_over_raw": t[f"{prefix}raw"] / t[f"{prefix}project"],
                # decoding's share of all cores' time when decoding and forwards keep every core busy
                f"{prefix}decode_core_share": decode_ms / (decode_ms + len(alphas) * forward_core_ms)}
    return out


def run_stream(root: Path, tiny: bool, device: str, precision: str) -> dict[str, dict]:
    """Every streaming figure: sections `memory`, `decodes`, `streaming` (and `stream_setup`)."""
    scale = TINY if tiny else FULL
    started = time.perf_counter()
    model, config = stream_vit_config(tiny)
    files = write_models(root / "stream-models", model, config, CLASSNAMES, ["a photo of a {}."])
    subject = Subject(root, model, files, device, precision)
    big, small, folders = jpeg_folders(root, scale.big, scale.small, scale.side)
    figures = {"memory": bench_memory(subject, {scale.big: big, scale.small: small}),
               "decodes": bench_decodes(subject, small, scale.decode_images, scale.workers),
               "streaming": bench_streaming(subject, small, scale)}
    figures["stream_setup"] = {"model": model, "image_size": config["vision_cfg"]["image_size"], "folders": folders,
                               "seconds": time.perf_counter() - started}
    return figures


def report_line(figures: dict) -> str:
    """One printed line of the streaming figures."""
    m, d, s = figures["memory"], figures["decodes"], figures["streaming"]
    return (f"streaming: peak RSS {m['small_peak_mb']:.0f} MB ({m['small_images']} images) -> {m['big_peak_mb']:.0f} "
            f"MB ({m['big_images']}), {m['big_img_s']:.0f} img/s; decodes/image over 21 alphas: project "
            f"{d['project_per_image']:g}, paper way {d['paper_per_image']:g}; images x alpha/s, 21 alphas: stream "
            f"{s['project_img_alpha_s']:.0f}, raw {s['raw_img_alpha_s']:.0f} ({len(s['few_alphas'])} alphas: "
            f"{s['few_project_img_alpha_s']:.0f}, {s['few_raw_img_alpha_s']:.0f}; first results after "
            f"{s['first_results_s']:.2f} s); decode {s['decode_ms']:.1f} ms/image on one core")


def sweep_once(experiment: str, alphas: Sequence[float]) -> dict:
    """One sweep as a user runs it (fresh cache); the streaming part timed after the models and index are loaded."""
    runtime = ExperimentRuntime.from_path(experiment)
    runtime.models  # noqa: B018 - loaded before timing (cached_property)
    images = sum(len(runtime.eval_set(name)) for name in runtime.set_names)
    start = time.perf_counter()
    run_sweep(runtime, alphas)
    seconds = time.perf_counter() - start
    return {"images": images, "alphas": list(alphas), "seconds": seconds, "images_per_s": images / seconds,
            "workers": runtime.workers}


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.bench_stream sweep EXPERIMENT --alphas A...`: one sweep; prints its JSON last."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_stream")
    parser.add_argument("command", choices=["sweep"])
    parser.add_argument("experiment")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.5])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps(sweep_once(args.experiment, args.alphas)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
