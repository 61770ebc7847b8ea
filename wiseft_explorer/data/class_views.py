"""The ID set seen through a shift's classes: the robustness testbed's x-axis for ImageNet-R, -A and ObjectNet.

The testbed plots those shifts against ImageNet accuracy on their classes only: the ID images of the shift's
classes, scored as the shift scores (logits masked to R's or A's 200 classes; ObjectNet's 113 groups by their max
logit). A view is that scoring applied to the ID set's logits, which the engine already has: no image is read twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .sets import EvalSet, project_logits, restrict_logits

VIEW_PRESETS = ("imagenet-r", "imagenet-a", "objectnet")  # the shifts the testbed plots against ImageNet on their classes


@dataclass(frozen=True)
class ClassView:
    """One shift's classes and scoring, to be applied to another set's (the ID set's) logits."""

    name: str  # the shift set's name
    class_indices: torch.Tensor  # (K,) the classes it scores (ObjectNet: each group's target)
    groups: tuple[tuple[int, ...], ...] | None = None  # ObjectNet: each target's member classes

    def logits(self, logits: torch.Tensor) -> torch.Tensor:
        """A batch's logits (N, C) as the shift scores them."""
        if self.groups is not None:
            return project_logits(logits, self.groups, self.class_indices)
        return restrict_logits(logits, self.class_indices)

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """The class a right prediction names for each label (ObjectNet: its group's target), -1 when the label is
        not among the view's classes (such images are not part of the view)."""
        if self.groups is None:
            members: Sequence[tuple[int, int]] = [(int(c), int(c)) for c in self.class_indices]
        else:
            members = [(c, int(t)) for group, t in zip(self.groups, self.class_indices, strict=True) for c in group]
        size = max([int(labels.max()) if len(labels) else 0] + [m for m, _ in members]) + 1
        lookup = torch.full((size,), -1, dtype=torch.long)
        for member, target in members:
            lookup[member] = target
        return lookup[labels.long()]


def class_views(id_set: str, shifts: Sequence[tuple[str, str | None]], id_preset: str | None,
                load: Callable[[str], EvalSet]) -> tuple[ClassView, ...]:
    """The views the ID set needs: one per ImageNet-R, -A or ObjectNet preset shift, when the ID set is ImageNet."""
    if id_preset != "imagenet":
        return ()
    views = []
    for name, preset in shifts:
        if preset in VIEW_PRESETS:
            ev = load(name)
            assert ev.class_indices is not None  # these presets always restrict their classes
            views.append(ClassView(name, ev.class_indices, ev.groups))
    return tuple(views)


def view_accuracy(pred: torch.Tensor, labels: torch.Tensor, view: ClassView) -> tuple[float, int]:
    """Top-1 over the images of the view's classes (NaN when none is done yet) and how many there are."""
    targets = view.targets(labels)
    covered = targets >= 0
    n = int(covered.sum())
    right = int((pred[covered].long() == targets[covered]).sum())
    return (right / n if n else float("nan")), n
