"""Merge methods on ViT-B/32 (random weights): ms to build θ into the working model, and the ratio to one lerp.

Every method writes into the same working model's flat buffer, in turns with the plain WiSE-FT lerp, at α values
that change every call. Model Stock and the soup get a second endpoint (another perturbation of θ₀); Fisher merging
gets random positive Fishers (only their arithmetic is timed here, not their estimation).
"""

from __future__ import annotations

import itertools

import torch

from wiseft_explorer.core import ImageClassifier, WeightSpace
from wiseft_explorer.core.merging import MethodChoice, merge_inputs, methods
from wiseft_explorer.results import ALPHA_GRID

from .bench_models import _perturbed

BOUNDED = ("lines", "slerp", "model-stock")  # the issue's ≤ 3× a lerp


def bench_merging(zs: ImageClassifier, ft: ImageClassifier, repeats: int, timed) -> dict:
    """{method: ms} and {method_over_lerp: ratio} for every registered method."""
    space = WeightSpace(zs, ft)
    other = WeightSpace(zs, _perturbed(ft, seed=11)).theta1
    inputs = merge_inputs(space, [other], ["ft", "other"])
    inputs.fishers = tuple({d: torch.rand_like(f) + 0.01 for d, f in space.theta0.items()} for _ in range(2))
    working = space.new_working()
    alphas = itertools.cycle(ALPHA_GRID[1:])

    def runner(name: str):
        choice = MethodChoice.of(name)
        method = choice.method
        method.build(inputs, choice.values(0.5), working.flats)  # the one-off derivations (angles, ratios) first
        return lambda: method.build(inputs, choice.values(next(alphas)), working.flats)

    fns = {name: runner(name) for name in methods()}
    t = timed(fns, repeats, device=next(zs.parameters()).device)
    fig = {f"{name}_ms": seconds * 1e3 for name, seconds in t.items()}
    fig.update({f"{name.replace('-', '_')}_over_lerp": t[name] / t["wiseft"] for name in t if name != "wiseft"})
    return fig


def method_sliders(runtime, images: torch.Tensor, labels: torch.Tensor, class_indices, timed, repeats: int) -> dict:
    """Each merge method's slider on the demo: a new α, θ built by the method into a working model from the pool,
    top-5 probabilities of the same 16 gallery images; methods the experiment cannot run (too few endpoints, no
    Fishers) are listed as skipped. `demo_methods_max_ms` is the slowest one (the issue's ≤ 100 ms)."""
    from wiseft_explorer.core.merging import MergeError
    from wiseft_explorer.evaluation.merging import with_method

    from .bench import _slider

    moves, skipped = {}, {}
    for name in methods():
        if name == "wiseft":
            continue
        try:
            merged = with_method(runtime, name)
            working = runtime.new_working()
            merged.classifier_at(working, 0.5)  # the one-off derivations (angles, ratios) first
        except (MergeError, FileNotFoundError) as err:
            skipped[name] = str(err)[:120]
            continue
        moves[name] = _slider(lambda a, m=merged, w=working: m.classifier_at(w, a), images, runtime.device,
                              runtime.experiment.precision, labels, class_indices)
    t = timed(moves, repeats, device=runtime.device) if moves else {}
    fig: dict = {f"demo_{name.replace('-', '_')}_ms": seconds * 1e3 for name, seconds in t.items()}
    fig["demo_methods_max_ms"] = max(fig.values(), default=0.0)
    fig["demo_methods_skipped"] = skipped
    return fig
