"""The built-in demo world: procedurally rendered, captioned shapes with named distribution shifts."""

from .captions import DEMO_TEMPLATES, caption, vocabulary_text
from .render import BACKGROUNDS, CLASSES, COLOUR_NAMES, COLOURS, STYLES, Attributes, render
from .sets import (
    SET_NAMES,
    SHIFT_NAMES,
    SPECS,
    LazyImages,
    SetSpec,
    WorldSet,
    cue_rate,
    make_set,
    sample_attributes,
    set_labels,
)

__all__ = [
    "BACKGROUNDS", "CLASSES", "COLOURS", "COLOUR_NAMES", "DEMO_TEMPLATES", "SET_NAMES", "SHIFT_NAMES", "SPECS",
    "STYLES", "Attributes", "LazyImages", "SetSpec", "WorldSet", "caption", "cue_rate", "make_set", "render",
    "sample_attributes", "set_labels", "vocabulary_text",
]
