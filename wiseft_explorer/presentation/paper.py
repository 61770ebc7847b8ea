"""The WiSE-FT paper's published accuracies (arXiv 2109.01903 v3), as data for the app's optional overlay.

Numbers are top-1 percentages on ImageNet (ID) and the average over its five shifts (V2, R, Sketch, ObjectNet, A).
They come from a different model and dataset than the experiment on screen, so the app shows them only on request
and always labelled with model and source.
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER = "Wortsman et al., Robust fine-tuning of zero-shot models (CVPR 2022), arXiv 2109.01903 v3"
SHIFT_NAMES = ("ImageNet-V2", "ImageNet-R", "ImageNet-Sketch", "ObjectNet", "ImageNet-A")


@dataclass(frozen=True)
class ReferencePoint:
    """One published row: ID accuracy and average shift accuracy (percent) of one model."""

    model: str  # the CLIP architecture
    label: str  # which classifier (zero-shot, fine-tuned, WiSE-FT alpha)
    id_acc: float
    avg_shifts: float
    source: str  # table in the paper
    alpha: float | None = None  # None when the row is not a point on a WiSE-FT line
    shifts: tuple[float, ...] | None = None  # per shift, in SHIFT_NAMES order, where published


VIT_L14_336 = "CLIP ViT-L/14@336px"
VIT_B16 = "CLIP ViT-B/16"

REFERENCE_POINTS: tuple[ReferencePoint, ...] = (
    ReferencePoint(VIT_L14_336, "zero-shot", 76.2, 73.3, "Table 1", 0.0, (70.1, 88.9, 60.2, 70.0, 77.2)),
    ReferencePoint(VIT_L14_336, "fine-tuned, linear classifier", 85.2, 72.6, "Table 1", None,
                   (75.8, 85.3, 58.7, 67.2, 76.1)),
    ReferencePoint(VIT_L14_336, "fine-tuned, end-to-end", 86.2, 68.6, "Table 1", 1.0, (76.8, 79.8, 57.9, 63.3, 65.4)),
    ReferencePoint(VIT_L14_336, "WiSE-FT linear classifier, α=0.5", 83.7, 75.9, "Table 1", None,
                   (76.3, 89.6, 63.0, 70.7, 79.7)),
    ReferencePoint(VIT_L14_336, "WiSE-FT end-to-end, α=0.5", 86.8, 76.9, "Table 1", 0.5, (79.5, 89.4, 64.7, 71.1, 79.9)),
    ReferencePoint(VIT_L14_336, "WiSE-FT end-to-end, optimal α per column", 87.1, 77.4, "Table 1", None,
                   (79.5, 90.3, 65.0, 72.1, 81.0)),
    ReferencePoint(VIT_B16, "zero-shot", 68.3, 58.1, "Table 5", 0.0),
    ReferencePoint(VIT_B16, "WiSE-FT end-to-end, α=0.4", 80.5, 63.5, "Table 5", 0.4),
    ReferencePoint(VIT_B16, "WiSE-FT end-to-end, α=0.5", 81.7, 63.0, "Table 5", 0.5, (72.8, 78.7, 53.9, 57.3, 52.2)),
    ReferencePoint(VIT_B16, "fine-tuned, end-to-end", 81.3, 53.8, "Table 5", 1.0),
    ReferencePoint(VIT_B16, "fine-tuned, linear classifier", 79.9, 57.2, "Table 5", None),
)


def reference_models() -> list[str]:
    """The architectures with published points, in table order."""
    return list(dict.fromkeys(p.model for p in REFERENCE_POINTS))


def points_for(model: str) -> list[ReferencePoint]:
    """The published rows of one architecture."""
    return [p for p in REFERENCE_POINTS if p.model == model]


def wiseft_line(model: str) -> list[ReferencePoint]:
    """The end-to-end WiSE-FT points of one architecture (zero-shot ... fine-tuned), ordered by alpha."""
    with_alpha = [(p.alpha, p) for p in points_for(model) if p.alpha is not None]
    return [p for _, p in sorted(with_alpha, key=lambda pair: pair[0])]
