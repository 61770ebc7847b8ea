"""Model soups (Wortsman et al., ICML 2022): the mean of fine-tuned endpoints that share θ₀, and WiSE-FT towards it.

θ = (1 − α)·θ₀ + α·mean(θᵢ, i ∈ members). `members` = "all" is the uniform soup; a comma list ("0,2") is any soup,
e.g. the greedy soup that `greedy_members` picks: ingredients sorted by held-out accuracy, best first, each kept
only if the soup's held-out accuracy rises strictly (`>`, as mlfoundations/model-soups' main.py does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .base import ALPHA, Cost, Flat, MergeError, MergeInputs, MergeMethod, ParamSpec, mix_into

MEMBERS = ParamSpec("members", "ingredients", "all",
                    help='"all" (the uniform soup), "greedy" (chosen on the held-out set) or endpoint indices "0,2"')


def members_of(text: str, count: int) -> list[int]:
    """The endpoint indices a `members` value names ("all", or a comma list of indices)."""
    if text == "all":
        return list(range(count))
    if text == "greedy":
        raise MergeError('members = "greedy" is chosen by evaluating soups on the held-out set: use the evaluation '
                         "layer's greedy soup (the CLI's --param members=greedy does), or name the indices")
    try:
        chosen = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as err:
        raise MergeError(f'members must be "all", "greedy" or endpoint indices like "0,2", got {text!r}') from err
    if not chosen or chosen[0] < 0 or chosen[-1] >= count:
        raise MergeError(f"members {text!r}: indices must lie in 0..{count - 1} (the experiment's endpoints)")
    return chosen


class Soup(MergeMethod):
    name = "soup"
    title = "Model soup"
    summary = "WiSE-FT towards the mean of the fine-tuned endpoints (Wortsman et al., ICML 2022)"
    params = (ALPHA, MEMBERS)

    def build(self, inputs: MergeInputs, values: Mapping[str, Any], out: Flat) -> None:
        chosen = members_of(str(values["members"]), len(inputs.endpoints))
        alpha, share = float(values["alpha"]), float(values["alpha"]) / len(chosen)
        for dtype, target in out.items():
            mix_into(target, [(inputs.theta0[dtype], 1.0 - alpha),
                              *((inputs.endpoints[i][dtype], share) for i in chosen)])

    def cost(self, inputs: MergeInputs) -> Cost:
        return Cost(passes=2.0 + len(inputs.endpoints))


@dataclass(frozen=True)
class GreedySoup:
    """The greedy soup's ingredients, and every step: (endpoint tried, soup's held-out accuracy, kept)."""

    members: list[int]
    steps: list[tuple[int, float, bool]]

    @property
    def param(self) -> str:
        return ",".join(str(i) for i in self.members)


def greedy_members(individual: Sequence[float], soup_accuracy: Callable[[list[int]], float]) -> GreedySoup:
    """Greedy soup: sort by held-out accuracy (best first), start from the best, add each ingredient only if the
    soup's held-out accuracy rises strictly. `soup_accuracy(members)` evaluates the uniform soup of those members."""
    order = sorted(range(len(individual)), key=lambda i: individual[i], reverse=True)
    members, best = [order[0]], individual[order[0]]
    steps = [(order[0], best, True)]
    for candidate in order[1:]:
        accuracy = soup_accuracy(sorted([*members, candidate]))
        kept = accuracy > best
        steps.append((candidate, accuracy, kept))
        if kept:
            members, best = [*members, candidate], accuracy
    return GreedySoup(sorted(members), steps)
