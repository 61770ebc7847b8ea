"""The one small interface every merge method implements: endpoints and θ₀ in, θ out into a flat buffer.

The weights live as flat buffers (one per dtype, see core.interpolate). A method writes θ into the working model's
buffers `out` directly; per-tensor methods walk `MergeInputs.tensors()`, which yields views (per tensor slices) of
θ₀, of every endpoint and of `out`, so no second full copy of the model is ever made.

Every method has an `alpha` parameter, the path from θ₀ (α = 0) to the method's point (α = 1), so that a sweep along
α draws each method as a path beside WiSE-FT's line. Its other parameters are described by `ParamSpec`s (name,
range, default), which a page can list to draw its controls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..interpolate import _float_entries

Flat = dict[torch.dtype, torch.Tensor]


class MergeError(ValueError):
    """A merge method cannot run with these endpoints or parameters (the message says what to change)."""


@dataclass(frozen=True)
class ParamSpec:
    """One control of a method: a number in [low, high] (`integer` for whole numbers) or one of `choices`."""

    name: str
    label: str
    default: float | int | str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    integer: bool = False
    help: str = ""

    def parse(self, value: Any) -> float | int | str:
        """A value from the CLI or a page, checked; the error names the parameter and its range."""
        if self.choices or isinstance(self.default, str):
            text = str(value)
            if self.choices and text not in self.choices:
                raise MergeError(f"{self.name} must be one of {', '.join(self.choices)}, got {text!r}")
            return text
        try:
            number = float(value)
        except (TypeError, ValueError) as err:
            raise MergeError(f"{self.name} must be a number, got {value!r}") from err
        if not math.isfinite(number) or (self.low is not None and number < self.low) or (
                self.high is not None and number > self.high):
            raise MergeError(f"{self.name} must lie in [{self.low}, {self.high}], got {value!r}")
        return int(number) if self.integer else number


ALPHA = ParamSpec("alpha", "α", 0.5, 0.0, 1.0, 0.01, help="0: the zero-shot θ₀; 1: the method's point")


@dataclass(frozen=True)
class TensorSlice:
    """Where one named tensor lies in the flat buffer of its dtype."""

    name: str
    dtype: torch.dtype
    start: int
    stop: int

    @property
    def numel(self) -> int:
        return self.stop - self.start


def flat_layout(module: nn.Module) -> list[TensorSlice]:
    """Every float tensor of a model and where it lies in the flat buffers core.interpolate makes of it."""
    layout: list[TensorSlice] = []
    offsets: dict[torch.dtype, int] = {}
    for name, tensor in _float_entries(module):
        start = offsets.get(tensor.dtype, 0)
        offsets[tensor.dtype] = start + tensor.numel()
        layout.append(TensorSlice(name, tensor.dtype, start, start + tensor.numel()))
    return layout


@dataclass(frozen=True)
class TensorViews:
    """One tensor's slice of θ₀, of every endpoint, and of the output buffer (views, no copies)."""

    slice: TensorSlice
    theta0: torch.Tensor
    endpoints: list[torch.Tensor]
    out: torch.Tensor


@dataclass
class MergeInputs:
    """θ₀ and the fine-tuned endpoints (sharing that θ₀) as flat buffers, with the per-tensor layout; read-only.

    `fishers`: the diagonal Fishers of θ₀ and of the first endpoint, same layout (ones where none was computed).
    `memo` keeps what a method derives from the inputs alone (angles, ratios), so a slider move only writes θ."""

    theta0: Flat
    endpoints: list[Flat]
    layout: list[TensorSlice]
    names: list[str] = field(default_factory=list)
    fishers: tuple[Flat, Flat] | None = None
    memo: dict[Any, Any] = field(default_factory=dict)

    def tensors(self, out: Flat | None = None) -> Iterator[TensorViews]:
        """Every tensor's views, in layout order (the output views alias θ₀ when no `out` is given)."""
        for sl in self.layout:
            cut = slice(sl.start, sl.stop)
            target = (out or self.theta0)[sl.dtype][cut]
            yield TensorViews(sl, self.theta0[sl.dtype][cut], [e[sl.dtype][cut] for e in self.endpoints], target)

    def remember(self, key: Any, compute: Callable[[], Any]) -> Any:
        """A value derived from the inputs alone, computed once."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]

    @property
    def num_weights(self) -> int:
        return sum(flat.numel() for flat in self.theta0.values())


@dataclass(frozen=True)
class Cost:
    """What building θ once costs: full passes over the weights (read or written), and as a ratio to one lerp."""

    passes: float

    @property
    def lerp_ratio(self) -> float:
        return self.passes / 3.0  # a lerp reads θ₀ and θ₁ and writes θ


class MergeMethod:
    """A way to build θ from θ₀ and the endpoints. Subclasses set the class attributes and write `build`."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    params: ClassVar[tuple[ParamSpec, ...]] = (ALPHA,)
    min_endpoints: ClassVar[int] = 1
    needs_fishers: ClassVar[bool] = False

    def values(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every parameter's value: the defaults, overridden by `given` (checked; unknown names refused)."""
        given = dict(given or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise MergeError(f"{self.name} has no parameter {', '.join(unknown)}; its parameters: "
                             f"{', '.join(known)}")
        return {name: spec.parse(given[name]) if name in given else spec.default for name, spec in known.items()}

    def check(self, inputs: MergeInputs) -> None:
        """Refuse inputs this method cannot use, naming the fix."""
        if len(inputs.endpoints) < self.min_endpoints:
            raise MergeError(f"{self.name} needs at least {self.min_endpoints} fine-tuned endpoints sharing θ₀, "
                             f"the experiment has {len(inputs.endpoints)}: add [[finetuned]] tables")
        if self.needs_fishers and inputs.fishers is None:
            raise MergeError(f"{self.name} needs the Fishers of θ₀ and θ₁: compute them with `wiseft-explorer "
                             "fisher --experiment FILE`")

    def build(self, inputs: MergeInputs, values: Mapping[str, Any], out: Flat) -> None:
        """Write θ for these parameter values into `out` (flat buffers with θ₀'s layout)."""
        raise NotImplementedError

    def cost(self, inputs: MergeInputs) -> Cost:
        """Passes over the weights one build makes (reads of each input and the write)."""
        return Cost(passes=2.0 + len(inputs.endpoints))


def mix_into(out: torch.Tensor, parts: list[tuple[torch.Tensor, float]]) -> None:
    """out = Σ weight · tensor, written in place (one pass per part, no temporary)."""
    (first, w0), rest = parts[0], parts[1:]
    torch.mul(first, w0, out=out)
    for tensor, weight in rest:
        out.add_(tensor, alpha=weight)
