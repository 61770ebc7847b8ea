"""Named sets of the demo world: the ID fine-tuning data, its held-out splits, five shifts and the pretraining pool."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .render import CLASSES, COLOUR_NAMES, POSITIONS, SIZES, Attributes, render


@dataclass(frozen=True)
class SetSpec:
    """How the attributes of one set are sampled (weights are normalised)."""

    styles: dict[str, float]
    backgrounds: dict[str, float]
    sizes: dict[str, float]
    positions: dict[str, float]
    cue: float = 0.0  # P(colour := the class's cue colour); otherwise uniform over all colours
    break_cue: bool = False  # never the class's cue colour (the shortcut is wrong on this set)
    max_angle: float = 20.0  # |rotation| bound in degrees for "upright" shapes
    rotated_share: float = 0.0  # share of shapes rotated by any angle
    offset: tuple[float, float] = (0.05, 0.12)  # how far (fraction of the side) off-centre positions move
    size: int = 500  # default number of images of an eval set (the minimum; the ID test set has 700)
    description: str = ""


# ID photos mix plain and cluttered backgrounds, all sizes and some rotation, as ImageNet photos do. With only
# plain backgrounds, fine-tuning learned "busy edges = star" and sent over half of the sketches to that class.
_ID_BG = {"plain": 1.0, "gradient": 1.0, "stripes": 0.6, "dots": 0.6, "checks": 0.6, "noise": 0.6}
_ALL_BG = dict.fromkeys(("plain", "stripes", "dots", "checks", "gradient", "noise"), 1.0)
_CLUTTER = {"stripes": 1.0, "dots": 1.0, "checks": 1.0, "noise": 1.0}
_ID_SIZES = {"small": 0.3, "medium": 0.4, "large": 0.3}
_ID_POS = {"center": 0.6, "left": 0.1, "right": 0.1, "top": 0.1, "bottom": 0.1}
_ALL_SIZES = {"small": 1.0, "medium": 1.0, "large": 1.0}
_ALL_POS = dict.fromkeys(POSITIONS, 1.0)
_ID: dict[str, Any] = dict(styles={"photo": 1.0}, backgrounds=_ID_BG, sizes=_ID_SIZES, positions=_ID_POS, cue=0.4, rotated_share=0.3)

SPECS: dict[str, SetSpec] = {
    "train": SetSpec(**_ID, size=12000, description="ID fine-tuning set: photos, colour cue"),
    "id-val": SetSpec(**_ID, description="held-out ID split for choosing alpha"),
    # 700 ID test images keep the app's cold start at 3,700 images per alpha; a WiSE-FT-vs-fine-tuned difference on
    # them still carries about 1.4 points of sampling error (the built-in demo-precise.toml renders 3,000).
    "id-test": SetSpec(**_ID, size=700, description="held-out ID test split"),
    "resample": SetSpec(
        **{**_ID, "cue": 0.3}, max_angle=25.0, offset=(0.08, 0.15),
        description="a fresh re-sample of ID, collected slightly differently (ImageNet-V2-like)"),
    "sketch": SetSpec(
        styles={"sketch": 1.0}, backgrounds={"plain": 1.0}, sizes=_ALL_SIZES, positions=_ID_POS, max_angle=25.0,
        description="pencil sketches on white (ImageNet-Sketch-like)"),
    "cartoon": SetSpec(
        styles={"cartoon": 1.0}, backgrounds={"plain": 2.0, "stripes": 1.0, "dots": 1.0, "checks": 1.0},
        sizes=_ALL_SIZES, positions=_ID_POS, max_angle=25.0, description="cartoons (ImageNet-R-like)"),
    "unusual": SetSpec(
        styles={"photo": 1.0}, backgrounds=_CLUTTER, sizes={"small": 0.6, "medium": 0.4}, positions=_ALL_POS,
        break_cue=True, rotated_share=1.0, offset=(0.12, 0.2),
        description="unusual poses and cluttered backgrounds, colour cue broken (ObjectNet-like)"),
    "corrupt": SetSpec(
        **{**_ID, "styles": {"pixelated": 1.0, "blurry": 1.0, "noisy": 1.0}},
        description="ID photos, pixelated, blurred or noisy (ImageNet-C-like)"),
    "pretrain": SetSpec(
        styles={"photo": 0.30, "sketch": 0.20, "cartoon": 0.20, "pixelated": 0.10, "blurry": 0.10, "noisy": 0.10},
        backgrounds=_ALL_BG, sizes=_ALL_SIZES, positions=_ALL_POS, max_angle=30.0, rotated_share=0.3,
        offset=(0.05, 0.2), size=100000, description="captioned pretraining pool, every style, no colour cue"),
}
SET_NAMES: tuple[str, ...] = ("train", "id-val", "id-test", "resample", "sketch", "cartoon", "unusual", "corrupt")
SHIFT_NAMES: tuple[str, ...] = ("resample", "sketch", "cartoon", "unusual", "corrupt")
_SET_CODES = {name: i for i, name in enumerate((*SET_NAMES, "pretrain"))}


@dataclass
class WorldSet:
    """A rendered set: images uint8 (N, H, W, 3), labels int64 (N,), one Attributes per image."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    attributes: list[Attributes] = field(repr=False)
    classnames: tuple[str, ...] = CLASSES

    def __len__(self) -> int:
        return len(self.labels)


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    # A plain loop: rng.choice(p=...) costs more than rendering a small image does.
    u = rng.random() * sum(weights.values())
    for key, w in weights.items():
        u -= w
        if u < 0:
            return key
    return key


def sample_attributes(spec: SetSpec, rng: np.random.Generator) -> Attributes:
    """Draw one image's attributes from a set's distribution."""
    label = int(rng.integers(len(CLASSES)))
    style = _pick(rng, spec.styles)
    if style == "sketch":
        colour = None
    elif spec.break_cue:
        colour = COLOUR_NAMES[(label + 1 + int(rng.integers(len(COLOUR_NAMES) - 1))) % len(COLOUR_NAMES)]
    elif rng.random() < spec.cue:
        colour = COLOUR_NAMES[label]
    else:
        colour = COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]
    size = _pick(rng, spec.sizes)
    scale = float(rng.uniform(*SIZES[size]))
    position = _pick(rng, spec.positions)
    ux, uy = POSITIONS[position]
    # Off-centre shapes move towards their side, but never so far that they leave the frame.
    reach = min(float(rng.uniform(*spec.offset)), max(0.0, 0.5 - scale * 0.95))
    jitter = rng.uniform(-0.04, 0.04, 2)
    centre = (float(ux * reach + jitter[0]), float(uy * reach + jitter[1]))
    rotated = rng.random() < spec.rotated_share
    angle = float(rng.uniform(-180, 180) if rotated else rng.uniform(-spec.max_angle, spec.max_angle))
    bg = "plain" if style == "sketch" else _pick(rng, spec.backgrounds)
    return Attributes(label, colour, size, scale, position, centre, angle, bg, style)


def image_rng(seed: int, name: str, index: int) -> np.random.Generator:
    """The generator for image `index` of a set: any prefix of a set is the same for any `n`."""
    return np.random.default_rng([seed, _SET_CODES[name], index])


def make_set(name: str, seed: int = 0, n: int | None = None, size: int = 32) -> WorldSet:
    """Render the named set deterministically from `seed` (n defaults to the set's standard size)."""
    if name not in SPECS:
        raise KeyError(f"unknown world set {name!r}; known: {', '.join(SPECS)}")
    spec = SPECS[name]
    n = spec.size if n is None else n
    images = np.empty((n, size, size, 3), np.uint8)
    attributes = []
    for i in range(n):
        rng = image_rng(seed, name, i)
        attrs = sample_attributes(spec, rng)
        images[i] = render(attrs, rng, size)
        attributes.append(attrs)
    labels = np.array([a.label for a in attributes], dtype=np.int64)
    return WorldSet(name, images, labels, attributes)


class LazyImages:
    """A named set's pixels rendered on first access, image by image (the same pixels make_set renders).

    The streaming engine reads a set in its fair order, a small batch of every set first: rendering only what is
    read puts 16 images per set, not all 3,700 demo images (0.6 s), before the app's first curves.
    """

    def __init__(self, name: str, indices: np.ndarray, seed: int = 0, size: int = 32) -> None:
        self.name, self.indices, self.seed, self.size = name, np.asarray(indices), seed, size
        self._pixels = np.zeros((len(self.indices), size, size, 3), np.uint8)
        self._done = np.zeros(len(self.indices), dtype=bool)
        self._lock = threading.Lock()

    @property
    def shape(self) -> tuple[int, ...]:
        """(N, H, W, 3), like the array it stands for."""
        return self._pixels.shape

    @property
    def dtype(self) -> np.dtype:
        """uint8."""
        return self._pixels.dtype

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):  # an int, a slice or a list/array of indices, as numpy indexing takes them
        wanted = np.unique(np.arange(len(self))[key])
        with self._lock:
            for i in wanted[~self._done[wanted]]:
                rng = image_rng(self.seed, self.name, int(self.indices[i]))
                self._pixels[i] = render(sample_attributes(SPECS[self.name], rng), rng, self.size)
                self._done[i] = True
        return self._pixels[key]

    def __getstate__(self) -> dict:  # pickled into loader workers without the lock
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def set_labels(name: str, seed: int = 0, n: int | None = None) -> np.ndarray:
    """The class of every image of a named set, without rendering any (int64 (N,))."""
    if name not in SPECS:
        raise KeyError(f"unknown world set {name!r}; known: {', '.join(SPECS)}")
    spec = SPECS[name]
    n = spec.size if n is None else n
    return np.array([sample_attributes(spec, image_rng(seed, name, i)).label for i in range(n)], dtype=np.int64)


def cue_rate(world_set: WorldSet) -> float:
    """Fraction of images whose colour is their class's cue colour (chance is 1/10)."""
    hits = [a.colour == COLOUR_NAMES[a.label] for a in world_set.attributes if a.colour is not None]
    return float(np.mean(hits)) if hits else 0.0
