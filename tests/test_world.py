"""The demo world: deterministic rendering, truthful captions, and the spurious cue where it belongs."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from wiseft_explorer.world import (
    BACKGROUNDS,
    CLASSES,
    COLOUR_NAMES,
    SET_NAMES,
    SPECS,
    STYLES,
    caption,
    cue_rate,
    make_set,
    render,
    sample_attributes,
)
from wiseft_explorer.world.captions import (
    BACKGROUND_WORDS,
    POSITION_PHRASES,
    ROTATED_WORDS,
    SIZE_WORDS,
    STYLE_PHRASES,
)
from wiseft_explorer.world.grid import sample_grid


@pytest.mark.parametrize("name", [*SET_NAMES, "pretrain"])
def test_sets_render_deterministically(name):
    a = make_set(name, seed=3, n=24)
    b = make_set(name, seed=3, n=24)
    assert a.images.shape == (24, 32, 32, 3) and a.images.dtype == np.uint8
    assert a.labels.dtype == np.int64 and len(a.attributes) == 24
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, make_set(name, seed=4, n=24).images)
    # A shorter set is a prefix of a longer one (per-image generators), so limits never reshuffle a set.
    np.testing.assert_array_equal(make_set(name, seed=3, n=10).images, a.images[:10])


@pytest.mark.parametrize("style", STYLES)
def test_each_style_renders_deterministically(style):
    spec = replace(SPECS["pretrain"], styles={style: 1.0})
    for i in range(5):
        attrs = sample_attributes(spec, np.random.default_rng([7, i]))
        assert attrs.style == style
        img1 = render(attrs, np.random.default_rng(i))
        img2 = render(attrs, np.random.default_rng(i))
        np.testing.assert_array_equal(img1, img2)
        assert img1.shape == (32, 32, 3) and img1.std() > 5  # something visible was drawn


def test_sets_differ_from_each_other():
    ids = make_set("id-test", n=16).images
    for name in ("id-val", "train", "resample", "sketch"):
        assert not np.array_equal(make_set(name, n=16).images, ids)


def test_eval_sets_are_large_enough():
    for name in SET_NAMES:
        assert SPECS[name].size >= 500
    assert SPECS["train"].size >= 10000


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_captions_mention_only_true_attributes():
    world = make_set("pretrain", seed=1, n=300)
    rng = np.random.default_rng(0)
    seen_colour = False
    for attrs in world.attributes:
        for _ in range(3):
            text = caption(attrs, rng)
            words = _words(text)
            assert attrs.shape in words
            assert not words & (set(CLASSES) - {attrs.shape}), text
            assert not words & (set(COLOUR_NAMES) - {attrs.colour}), text
            seen_colour |= attrs.colour in words
            other_bgs = {w for b, w in BACKGROUND_WORDS.items() if b != attrs.background}
            if "background" in words:
                assert not words & other_bgs, text
            for size, size_words in SIZE_WORDS.items():
                if size != attrs.size:
                    assert not words & set(size_words), text
            for position, phrase in POSITION_PHRASES.items():
                if position != attrs.position:
                    assert phrase not in text, text
            if words & set(ROTATED_WORDS):
                assert attrs.shape != "circle" and abs((attrs.angle + 180) % 360 - 180) >= 35, text
            style_words = {"sketch", "drawing", "cartoon", "pixelated", "blurry", "blurred", "noisy", "grainy"}
            own = _words(" ".join(STYLE_PHRASES[attrs.style]))
            assert not words & (style_words - own), (attrs.style, text)
            if attrs.style in ("sketch", "cartoon"):
                assert "photo" not in words and "photograph" not in words, text
    assert seen_colour


def test_spurious_cue_in_train_and_broken_in_unusual():
    train = make_set("train", n=1500)
    assert cue_rate(train) > 0.35  # class k is drawn in colour k far above chance (0.1)
    unusual = make_set("unusual", n=600)
    assert cue_rate(unusual) == 0.0  # never the cue colour: the shortcut is always wrong there
    assert cue_rate(make_set("sketch", n=100)) == 0.0  # sketches carry no colour at all
    assert all(a.colour is None for a in make_set("sketch", n=50).attributes)


def test_set_styles_and_backgrounds_follow_their_specs():
    for name in SET_NAMES:
        world = make_set(name, n=60)
        spec = SPECS[name]
        assert {a.style for a in world.attributes} <= set(spec.styles)
        assert {a.background for a in world.attributes} <= set(spec.backgrounds) | {"plain"}
        assert {a.background for a in world.attributes} <= set(BACKGROUNDS)
        assert set(world.labels.tolist()) <= set(range(len(CLASSES)))


def test_unknown_set_name():
    with pytest.raises(KeyError, match="unknown world set"):
        make_set("imagenet")


def test_sample_grid_has_one_row_per_set():
    grid = sample_grid(per_row=4, zoom=1)
    assert grid.height == len(SET_NAMES) * 34 + 2


def test_lazy_images_render_exactly_the_pixels_of_make_set():
    from wiseft_explorer.world import LazyImages, set_labels

    world = make_set("sketch", n=40)
    assert np.array_equal(set_labels("sketch", n=40), world.labels)
    lazy = LazyImages("sketch", np.arange(40))
    picked = [31, 2, 17, 2]
    np.testing.assert_array_equal(lazy[picked], world.images[picked])
    assert int(lazy._done.sum()) == 3  # only what was read was rendered
    np.testing.assert_array_equal(lazy[5], world.images[5])
    np.testing.assert_array_equal(lazy[np.arange(40)], world.images)
    subset = LazyImages("sketch", np.array([3, 9]))  # a class subset keeps some of the set's images
    np.testing.assert_array_equal(subset[[1, 0]], world.images[[9, 3]])


def test_the_models_page_counts_world_sets_as_the_sweep_does():
    """The demo's world sets are checked as indexed for the sweep: every image and class, a subset honoured."""
    from wiseft_explorer.data import check_experiment, load_eval_set
    from wiseft_explorer.experiment import DEFAULT_EXPERIMENT, load_experiment

    exp = load_experiment(DEFAULT_EXPERIMENT)
    checks = check_experiment(exp)
    for spec, check in zip(exp.eval_sets, checks, strict=True):
        ev = load_eval_set(spec, exp.classnames)
        assert check.error is None and check.images == len(ev) > 0
        assert len(check.covered) == len(exp.classnames)
        assert check.summary(len(exp.classnames)) == f"{spec.name}: {len(ev):,} images of 10 of 10 classes"
    narrow = replace(exp.shifts[0], classes=("circle", "arrow"))
    check = check_experiment(replace(exp, shifts=(narrow,)))[2]
    assert check.covered == ["circle", "arrow"] and check.images == len(load_eval_set(narrow, exp.classnames))
    broken = replace(exp.shifts[0], source="world:nowhere")
    assert "unknown world set" in check_experiment(replace(exp, shifts=(broken,)))[2].error
