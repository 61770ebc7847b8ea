"""Features once: a linear-classifier endpoint's 21-alpha sweep against its 1-alpha sweep, and a second head.

Part of `python -m benchmarks.bench` (figure section `lc_sweep`). `lc_sweep(root, ...)` is self-contained (it
writes its models and JPEGs under `root`), so the GPU run can call it as it is. The tower is ViT-B/32's (random
weights; the --tiny stand-in's with `tiny`); every image is a generated JPEG streamed from disk.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import open_clip
import torch

from wiseft_explorer.core import (
    ImageClassifier,
    LoadedClip,
    build_zeroshot,
    classifier_metadata,
    save_checkpoint,
)
from wiseft_explorer.data import DecodeCounter
from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep
from wiseft_explorer.results import ALPHA_GRID
from wiseft_explorer.store import DiskCache

from .bench import timed
from .bench_models import _TINY_VIT, CLASSNAMES, _register, jpeg_folders
from .bench_stream import Subject

TEMPLATES = ["a photo of a {}."]


def linear_models(root: Path, tiny: bool) -> tuple[str, Path, Path, list[Path]]:
    """A random ViT-B/32 (model name, config, zero-shot weights) and two linear-classifier checkpoints over it."""
    name = "wiseft-bench-lc-tiny" if tiny else "wiseft-bench-lc-vitb32"
    config = _register(root, name, _TINY_VIT if tiny else open_clip.get_model_config("ViT-B-32"))
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    zeroshot = save_checkpoint(root / "zeroshot.safetensors", model.state_dict())
    clip = LoadedClip(model.eval(), preprocess, open_clip.get_tokenizer(name), name)
    head = build_zeroshot(clip, CLASSNAMES, TEMPLATES).head
    heads = []
    for seed in (1, 2):  # two recipes' heads over the same tower: only the head is stored (image_tower = zeroshot)
        gen = torch.Generator().manual_seed(seed)
        state = {f"head.{k}": v + 0.3 * float(v.std()) * torch.randn(v.shape, generator=gen)
                 for k, v in head.state_dict().items()}
        heads.append(save_checkpoint(root / f"linear{seed}.safetensors", state,
                                     classifier_metadata(clip, CLASSNAMES, image_tower="zeroshot", seed=seed)))
    return name, config, zeroshot, heads


@contextlib.contextmanager
def counting_forwards() -> Iterator[list[int]]:
    """Images that go through any classifier's image tower while inside."""
    count, original = [0], ImageClassifier.features

    def counted(self: ImageClassifier, images: torch.Tensor) -> torch.Tensor:
        count[0] += len(images)
        return original(self, images)

    ImageClassifier.features = counted  # type: ignore[method-assign]
    try:
        yield count
    finally:
        ImageClassifier.features = original  # type: ignore[method-assign]


def lc_sweep(root: Path, *, images: int = 256, side: tuple[int, int] = (500, 375), device: str = "cpu",
             precision: str = "fp32", repeats: int = 2, workers: int | None = None, tiny: bool = False) -> dict:
    """21-alpha vs 1-alpha sweep of a linear-classifier endpoint (features once: about the same time), then a second
    head over the same images from the feature cache (no forward, no decode)."""
    name, config, zeroshot, (first, second) = linear_models(root / "lc-models", tiny)
    folder = jpeg_folders(root / "lc-jpeg", images, 0, side)[0]
    subject = Subject(root, name, (config, zeroshot, first), device, precision)
    runtime = subject.runtime("lc", folder, workers=workers)
    assert runtime.space.shared_tower, "the linear endpoint's tower must be the zero-shot tower"
    runtime.tower_digest  # noqa: B018 - once per runtime, not part of a sweep's time
    caches = iter(range(10**6))

    def sweep(alphas: tuple[float, ...]):
        def run() -> None:  # a fresh cache every time: every feature is computed, as in a first sweep
            run_sweep(runtime, alphas, cache=DiskCache(root / f"lc-cache-{next(caches)}"), resume=False)
        return run

    # Warm-up on a few images (loader workers, kernels), so that neither variant pays for it.
    run_sweep(runtime, (0.5,), cache=DiskCache(root / "lc-cache-warm"), resume=False, max_images=16)
    t = timed({"one": sweep((0.5,)), "grid": sweep(tuple(ALPHA_GRID))}, repeats, warmup=0,
              device=runtime.device)
    shared = DiskCache(root / "lc-cache-shared")
    run_sweep(runtime, ALPHA_GRID, cache=shared, resume=False)  # fills the feature cache
    other = ExperimentRuntime.from_path(Subject(root, name, (config, zeroshot, second), device, precision)
                                        .experiment("lc-second", folder, workers=workers))
    other.models  # noqa: B018 - loading is not the sweep
    counter = DecodeCounter()
    with counting_forwards() as forwards:
        start = time.perf_counter()
        run_sweep(other, ALPHA_GRID, cache=shared, resume=False, counter=counter)
        second_s = time.perf_counter() - start
    return {"images": images, "side": list(side), "model": name, "workers": runtime.workers,
            "one_alpha_s": t["one"], "grid_s": t["grid"], "over_one_alpha": t["grid"] / t["one"],
            "img_s_21_alphas": images / t["grid"], "second_head_s": second_s,
            "second_head_forwards": forwards[0], "second_head_decodes": counter.count}


def report_line(figures: dict) -> str:
    """The benchmark's printed line for the linear-classifier sweep."""
    lc = figures["lc_sweep"]
    return (f"linear-classifier sweep ({lc['images']} JPEGs, {lc['model']}): 1 alpha {lc['one_alpha_s']:.1f} s, "
            f"21 alphas {lc['grid_s']:.1f} s; a second head {lc['second_head_s']:.1f} s with "
            f"{lc['second_head_forwards']} forwards, {lc['second_head_decodes']} decodes")
