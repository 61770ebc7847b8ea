"""Captions of world images: random subsets of an image's true attributes, phrased as web alt-text would be."""

from __future__ import annotations

import numpy as np

from .render import CLASSES, COLOUR_NAMES, Attributes

# Phrases that introduce the image, per style. Corrupted photos are still photos, so "photo" is true for them.
STYLE_PHRASES: dict[str, tuple[str, ...]] = {
    "photo": ("a photo of", "a photograph of", "a close-up photo of"),
    "sketch": ("a sketch of", "a pencil sketch of", "a drawing of", "a pencil drawing of"),
    "cartoon": ("a cartoon of", "a cartoon drawing of", "a colorful cartoon of"),
    "pixelated": ("a pixelated photo of", "a pixelated image of", "a low resolution photo of"),
    "blurry": ("a blurry photo of", "a blurred image of", "an out of focus photo of"),
    "noisy": ("a noisy photo of", "a grainy photo of", "a noisy image of"),
}
NEUTRAL_PHRASES: tuple[str, ...] = ("", "an image of", "a picture of")  # true of every style
SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small", "tiny"), "medium": (), "large": ("large", "big")}
BACKGROUND_WORDS: dict[str, str] = {
    "plain": "plain", "stripes": "striped", "dots": "dotted", "checks": "checkered", "gradient": "gradient",
    "noise": "speckled",
}
POSITION_PHRASES: dict[str, str] = {
    "center": "in the center", "left": "on the left", "right": "on the right", "top": "at the top",
    "bottom": "at the bottom",
}
ROTATED_WORDS: tuple[str, ...] = ("rotated", "tilted")
ROTATED_MIN_ANGLE = 35.0  # only shapes turned at least this far are called rotated
_SYMMETRIC = {"circle"}  # a rotated circle looks unrotated, so never call it rotated

# Zero-shot prompt templates for the demo: "the" avoids a/an agreement with class names.
DEMO_TEMPLATES: tuple[str, ...] = (
    "a photo of the {}.", "an image of the {}.", "a picture of the {}.", "a sketch of the {}.",
    "a drawing of the {}.", "a cartoon of the {}.", "a pixelated photo of the {}.", "a blurry photo of the {}.",
    "a noisy photo of the {}.", "the {}.",
)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _choice(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def caption(attrs: Attributes, rng: np.random.Generator) -> str:
    """One caption naming a random subset of the image's true attributes (the shape always)."""
    styled = rng.random() < 0.75
    intro = _choice(rng, STYLE_PHRASES[attrs.style] if styled else NEUTRAL_PHRASES)
    adjectives = []
    if rng.random() < 0.3 and SIZE_WORDS[attrs.size]:
        adjectives.append(_choice(rng, SIZE_WORDS[attrs.size]))
    if (
        rng.random() < 0.2
        and attrs.shape not in _SYMMETRIC
        and abs((attrs.angle + 180) % 360 - 180) >= ROTATED_MIN_ANGLE
    ):
        adjectives.append(_choice(rng, ROTATED_WORDS))
    if attrs.colour is not None and rng.random() < 0.5:
        adjectives.append(attrs.colour)
    noun = " ".join([*adjectives, attrs.shape])
    determiner = "the" if rng.random() < 0.3 else _article(noun)
    words = [intro, determiner, noun]
    if rng.random() < 0.3:
        bg = BACKGROUND_WORDS[attrs.background]
        words.append(f"on {_article(bg)} {bg} background")
    if rng.random() < 0.2:
        words.append(POSITION_PHRASES[attrs.position])
    return " ".join(w for w in words if w) + "."


def vocabulary_text() -> str:
    """Every word and punctuation mark that captions and demo templates can produce, as one string."""
    parts = [p for phrases in STYLE_PHRASES.values() for p in phrases]
    parts += list(NEUTRAL_PHRASES) + [w for ws in SIZE_WORDS.values() for w in ws]
    parts += list(BACKGROUND_WORDS.values()) + list(POSITION_PHRASES.values()) + list(ROTATED_WORDS)
    parts += list(COLOUR_NAMES) + list(CLASSES) + [t.format("") for t in DEMO_TEMPLATES]
    parts += ["a", "an", "the", "on", "background", "."]
    return " ".join(parts)
