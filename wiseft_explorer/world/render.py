"""Procedural rendering of one world image from its attributes (numpy + PIL, deterministic per rng)."""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "heart", "diamond", "hexagon", "crescent", "arrow",
)
# One named colour per class, in class order: the ID training set's spurious cue is "class k is often COLOURS[k]".
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38), "orange": (245, 140, 25), "yellow": (240, 215, 35), "green": (45, 165, 60),
    "teal": (20, 150, 150), "blue": (40, 80, 215), "purple": (130, 50, 175), "pink": (245, 120, 180),
    "brown": (125, 75, 35), "black": (25, 25, 25),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
BACKGROUNDS: tuple[str, ...] = ("plain", "stripes", "dots", "checks", "gradient", "noise")
STYLES: tuple[str, ...] = ("photo", "sketch", "cartoon", "pixelated", "blurry", "noisy")
SIZES: dict[str, tuple[float, float]] = {"small": (0.20, 0.27), "medium": (0.28, 0.35), "large": (0.36, 0.44)}
POSITIONS: dict[str, tuple[float, float]] = {
    "center": (0.0, 0.0), "left": (-1.0, 0.0), "right": (1.0, 0.0), "top": (0.0, -1.0), "bottom": (0.0, 1.0),
}


@dataclass(frozen=True)
class Attributes:
    """Everything that determines one image; captions may only state these facts."""

    label: int
    colour: str | None  # None for sketches (no colour is drawn)
    size: str
    scale: float  # shape radius as a fraction of the image side
    position: str
    centre: tuple[float, float]  # shape centre as fractions of the image side
    angle: float  # degrees, counter-clockwise
    background: str
    style: str

    @property
    def shape(self) -> str:
        """The class name of the shape."""
        return CLASSES[self.label]


def _regular(n: int, radius: float = 1.0, start: float = -90.0) -> np.ndarray:
    t = np.deg2rad(start + 360.0 * np.arange(n) / n)
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def _star() -> np.ndarray:
    pts = _regular(10, 1.0)
    pts[1::2] *= 0.42
    return pts


def _heart() -> np.ndarray:
    t = np.linspace(0.0, 2 * math.pi, 40, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    # Image y grows downwards, so flip y; recentre the lobes/tip around the origin.
    return np.stack([x / 16.5, -(y + 2.5) / 15.5], axis=1)


# Outlines in unit coordinates (radius ~1, y down). The crescent is a disc minus an offset disc.
_POLYGONS: dict[str, np.ndarray] = {
    "circle": _regular(40),
    "square": np.array([[-0.78, -0.78], [0.78, -0.78], [0.78, 0.78], [-0.78, 0.78]]),
    "triangle": _regular(3, 1.05) + np.array([0.0, 0.12]),
    "star": _star(),
    "cross": np.array([[-0.3, -0.92], [0.3, -0.92], [0.3, -0.3], [0.92, -0.3], [0.92, 0.3], [0.3, 0.3],
                       [0.3, 0.92], [-0.3, 0.92], [-0.3, 0.3], [-0.92, 0.3], [-0.92, -0.3], [-0.3, -0.3]]),
    "heart": _heart(),
    "diamond": np.array([[0.0, -1.0], [0.58, 0.0], [0.0, 1.0], [-0.58, 0.0]]),
    "hexagon": _regular(6, 0.95, 0.0),
    "crescent": _regular(40),
    "arrow": np.array([[-0.95, -0.22], [0.12, -0.22], [0.12, -0.6], [0.95, 0.0], [0.12, 0.6], [0.12, 0.22],
                       [-0.95, 0.22]]),
}
_CRESCENT_HOLE = (_regular(40, 0.8), np.array([0.42, -0.12]))


@lru_cache(maxsize=4)
def _grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    return x, y


@lru_cache(maxsize=8)
def _upsampler(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) bilinear interpolation matrix (align-corners)."""
    pos = np.linspace(0, n_in - 1, n_out)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = pos - lo
    mat = np.zeros((n_out, n_in), np.float32)
    mat[np.arange(n_out), lo] = 1 - frac
    mat[np.arange(n_out), lo + 1] = frac
    return mat


def _smooth_noise(coarse: np.ndarray, side: int) -> np.ndarray:
    """A coarse random grid bilinearly upsampled to (side, side)."""
    up = _upsampler(side, coarse.shape[0])
    return (up @ coarse.astype(np.float32) @ up.T).astype(np.float32)


def _transform(pts: np.ndarray, attrs: Attributes, side: int) -> list[tuple[float, float]]:
    a = math.radians(-attrs.angle)  # counter-clockwise on screen, where y points down
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    out = (pts @ rot.T) * attrs.scale * side
    out += np.array([(0.5 + attrs.centre[0]) * side, (0.5 + attrs.centre[1]) * side])
    return [tuple(p) for p in out.tolist()]


def shape_mask(attrs: Attributes, side: int) -> Image.Image:
    """Binary 'L' mask (255 inside the shape) at `side` pixels."""
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    draw.polygon(_transform(_POLYGONS[attrs.shape], attrs, side), fill=255)
    if attrs.shape == "crescent":
        hole, offset = _CRESCENT_HOLE
        draw.polygon(_transform(hole + offset, attrs, side), fill=0)
    return mask


def _muted(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    h, s, v = rng.random(), rng.uniform(*sat), rng.uniform(*val)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32) * 255.0


def background(kind: str, rng: np.random.Generator, side: int, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Float (side, side, 3) background of the given kind in two colours."""
    x, y = _grid(side)
    theta = rng.uniform(0, math.pi)
    t: np.ndarray
    proj = x * math.cos(theta) + y * math.sin(theta)
    if kind == "plain":
        t = np.zeros((side, side), np.float32)
    elif kind == "gradient":
        lo = min(0.0, math.cos(theta)) * side + min(0.0, math.sin(theta)) * side  # proj at the extreme corners
        t = (proj - lo) / (side * (abs(math.cos(theta)) + abs(math.sin(theta))))
    elif kind == "stripes":
        period = rng.uniform(0.12, 0.25) * side
        t = ((proj / period) % 1.0 < 0.5).astype(np.float32)
    elif kind == "dots":
        step, radius = rng.uniform(0.16, 0.25) * side, rng.uniform(0.04, 0.07) * side
        dx, dy = (x - rng.uniform(0, step)) % step - step / 2, (y - rng.uniform(0, step)) % step - step / 2
        t = (dx * dx + dy * dy < radius * radius).astype(np.float32)
    elif kind == "checks":
        cell = rng.uniform(0.12, 0.25) * side
        t = ((np.floor(x / cell) + np.floor(y / cell)) % 2).astype(np.float32)
    elif kind == "noise":
        t = _smooth_noise(rng.random((8, 8)), side)
        t = np.clip(t + rng.normal(0, 0.15, (side, side)).astype(np.float32), 0, 1)
    else:
        raise ValueError(f"unknown background {kind!r}")
    return c1 + t[..., None] * (c2 - c1)


def _rgb(attrs: Attributes) -> tuple[int, int, int]:
    """The shape's fill colour; every style but sketch draws one."""
    if attrs.colour is None:
        raise ValueError(f"a {attrs.style} image needs a colour (only sketches are drawn without one)")
    return COLOURS[attrs.colour]


def _photo(attrs: Attributes, rng: np.random.Generator, side: int, mask: np.ndarray) -> np.ndarray:
    low_contrast = attrs.background in ("plain", "gradient")
    c1 = _muted(rng, (0.05, 0.4), (0.45, 0.9))
    c2 = c1 * rng.uniform(0.75, 0.9) if low_contrast else _muted(rng, (0.1, 0.6), (0.35, 0.95))
    img = background(attrs.background, rng, side, c1, c2)
    # A soft drop shadow and a light direction make it read as an object in a photo rather than a flat icon.
    shift = max(1, side // 24)
    img[shift:, shift:] *= 1.0 - 0.35 * mask[:-shift, :-shift, None]
    x, y = _grid(side)
    phi = rng.uniform(0, 2 * math.pi)
    ramp = ((x - side / 2) * math.cos(phi) + (y - side / 2) * math.sin(phi)) / side
    texture = _smooth_noise(rng.normal(0, 0.07, (6, 6)), side)
    base = np.array(_rgb(attrs), np.float32) + rng.normal(0, 12, 3).astype(np.float32)
    shade = (1.0 + 0.6 * ramp + texture)[..., None]
    fg = base * shade + 40.0 * np.clip(ramp, 0, None)[..., None]  # a highlight on the lit side
    m = mask[..., None]
    return img * (1 - m) + fg * m


def _erode(mask: np.ndarray, width: int) -> np.ndarray:
    # Separable min filter, edges replicated (much cheaper than PIL's rank filter for wide outlines).
    out = mask.copy()
    for axis in (0, 1):
        src = out.copy()
        for d in range(1, width + 1):
            lo = [slice(None)] * 2
            hi = [slice(None)] * 2
            lo[axis], hi[axis] = slice(d, None), slice(None, -d)
            out[tuple(lo)] = np.minimum(out[tuple(lo)], src[tuple(hi)])
            out[tuple(hi)] = np.minimum(out[tuple(hi)], src[tuple(lo)])
    return out


def _sketch(attrs: Attributes, rng: np.random.Generator, side: int, mask: np.ndarray, line: np.ndarray) -> np.ndarray:
    paper = rng.uniform(225, 250)
    img = np.full((side, side, 3), paper, np.float32) + rng.normal(0, 4, (side, side, 1)).astype(np.float32)
    if rng.random() < 0.4:  # light pencil hatching inside, as sketches often have
        x, y = _grid(side)
        hatch = ((x + y) % rng.uniform(2.5, 4) < 0.8).astype(np.float32)
        img -= (rng.uniform(40, 90) * hatch * mask)[..., None]
    pencil = rng.uniform(20, 90)
    strength = np.clip(rng.normal(0.9, 0.15, (side, side)), 0.4, 1.0).astype(np.float32) * line
    return img * (1 - strength[..., None]) + pencil * strength[..., None]


def _cartoon(attrs: Attributes, rng: np.random.Generator, side: int, mask: np.ndarray, line: np.ndarray) -> np.ndarray:
    c1 = _muted(rng, (0.25, 0.6), (0.9, 1.0))
    kind = attrs.background if attrs.background in ("plain", "stripes", "dots", "checks") else "plain"
    img = background(kind, rng, side, c1, c1 * 0.85 + 38)
    r, g, b = (np.array(_rgb(attrs)) / 255.0).tolist()
    h, _, v = colorsys.rgb_to_hsv(r, g, b)
    # Flat, saturated and bright: cartoons exaggerate colour (black stays black).
    fill = np.array(colorsys.hsv_to_rgb(h, 0.0 if attrs.colour == "black" else 0.9, max(v, 0.15)), np.float32)
    m = mask[..., None]
    img = img * (1 - m) + fill * 255.0 * m
    return img * (1 - line[..., None]) + 10.0 * line[..., None]


def _downsample(img: np.ndarray, factor: int) -> np.ndarray:
    out = img[0::factor, 0::factor].copy()
    for dy in range(factor):
        for dx in range(factor):
            if dx or dy:
                out += img[dy::factor, dx::factor]
    return out / (factor * factor)


def render(attrs: Attributes, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Render one image as uint8 (size, size, 3); all randomness comes from `rng`."""
    # Shapes are drawn at twice the size and box-downsampled into soft masks (cheap anti-aliasing);
    # colours are composited at the final size, which keeps rendering at thousands of images per second.
    mask_hi = np.asarray(shape_mask(attrs, 2 * size), np.float32) / 255.0
    mask = _downsample(mask_hi, 2)
    if attrs.style in ("sketch", "cartoon"):
        width = max(2, size // 16) if attrs.style == "sketch" else max(2, size // 8)
        line = _downsample(mask_hi - _erode(mask_hi, width), 2)
        draw = _sketch if attrs.style == "sketch" else _cartoon
        img = draw(attrs, rng, size, mask, line)
    else:
        img = _photo(attrs, rng, size, mask)
    img = np.clip(img, 0, 255)
    if attrs.style == "pixelated":
        block = int(rng.choice([3, 4]))
        small = Image.fromarray(img.astype(np.uint8)).resize((size // block, size // block), Image.Resampling.BOX)
        img = np.asarray(small.resize((size, size), Image.Resampling.NEAREST), np.float32)
    elif attrs.style == "blurry":
        blurred = Image.fromarray(img.astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 1.6)))
        img = np.asarray(blurred, np.float32)
    elif attrs.style == "noisy":
        img = img + rng.normal(0, rng.uniform(35, 55), img.shape)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
