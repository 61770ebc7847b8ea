"""The lesson: six steps whose numbers come from the experiment on screen; each with its own URL, alpha and view."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_app import ROOT, make_app_experiment

from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep
from wiseft_explorer.presentation import (
    broken_caption,
    lesson_steps,
    step_index,
    step_note,
    with_article,
    worst_shift,
)
from wiseft_explorer.results import ALPHA_GRID, Curves


def _curves(shifts: bool = True, id_val: bool = True, ensemble: bool = True) -> Curves:
    """Made-up curves: ID rises with alpha, the shift falls after 0.4; the ensemble trails the weight-space mix."""
    top1 = {"ID": {a: 0.6 + 0.3 * a for a in ALPHA_GRID}}
    if id_val:
        top1["ID-val"] = {a: 0.61 + 0.3 * a - 0.5 * max(0.0, a - 0.7) for a in ALPHA_GRID}  # peaks at 0.7
    if shifts:
        top1["Sketch"] = {a: 0.5 + 0.2 * a - 0.5 * max(0.0, a - 0.4) for a in ALPHA_GRID}
        top1["Cartoon"] = {a: 0.7 - 0.1 * a for a in ALPHA_GRID}
    names = [s for s in ("Sketch", "Cartoon") if shifts]
    ens = {s: {a: v - 0.02 * a * (1 - a) for a, v in by.items()} for s, by in top1.items()} if ensemble else {}
    return Curves("ID", "ID-val" if id_val else None, names, list(ALPHA_GRID), top1, ensemble=ens)


@pytest.fixture(scope="module")
def app_toml(tmp_path_factory):
    """The tiny app experiment (its fine-tuned head fitted to the ID images, so alpha matters)."""
    return make_app_experiment(tmp_path_factory.mktemp("lesson"))


def test_every_step_takes_its_numbers_from_the_curves():
    steps = lesson_steps(_curves(), "end-to-end")
    assert [s.slug for s in steps] == ["zero-shot", "fine-tuning", "weight-space-mix", "choosing-alpha",
                                       "output-space", "try-it"]
    assert [s.view for s in steps] == ["id_vs_shift", "id_vs_shift", "id_vs_shift", "accuracy_vs_alpha",
                                       "id_vs_shift", "canvas"]
    zero, fine, mix, choose, output, try_it = steps
    assert zero.alpha == 0.0 and "60.0% of ID" in zero.text and "60.0% on average" in zero.text
    assert "from 70.0% on Cartoon to 50.0% on Sketch" in zero.text
    # ID 60.0 -> 90.0; shifts (50 + 70)/2 = 60.0 -> (40 + 60)/2 = 50.0; both shifts lose 10.0, Sketch is listed first
    assert fine.alpha == 1.0 and "from 60.0% to 90.0% (+30.0 points)" in fine.text
    assert "from 60.0% to 50.0% (-10.0 points)" in fine.text and "Sketch changes most, -10.0 points" in fine.text
    assert fine.broken_examples and "fine-tuning (end-to-end)" in fine.title
    assert mix.alpha == 0.5 and "ID 75.0% (+15.0 points over zero-shot, -15.0 points against fine-tuned)" in mix.text
    assert "shifts 60.0% (+10.0 points over fine-tuned)" in mix.text  # Sketch 55, Cartoon 65
    assert choose.alpha == 0.7 and "best α on ID-val is 0.7, where ID scores 81.0% and the shifts 56.0%" in choose.text
    assert "Peeking at the shifts would pick α = 0.4 (62.0%)" in choose.text
    assert output.ensemble and "(1 − α)·logits₀ + α·logits₁" in output.text and "twice the compute" in output.text
    # ensemble at 0.5: every accuracy minus 0.02 * 0.25 = 0.5 points
    assert "scores 74.5% on ID and 59.5% on the shifts, against 75.0% and 60.0%" in output.text
    assert try_it.alpha == choose.alpha and try_it.view == "canvas"


def test_the_worst_shift_is_the_one_fine_tuning_hurt_most():
    curves = _curves()
    curves.top1s["Cartoon"][1.0] = 0.3  # now -40 points, against Sketch's -10
    assert worst_shift(curves) == "Cartoon"
    assert worst_shift(_curves(shifts=False)) is None


def test_the_lesson_works_on_an_experiment_without_shifts_held_out_set_or_ensemble():
    steps = lesson_steps(_curves(shifts=False, id_val=False, ensemble=False))
    assert len(steps) == 6 and all(s.text for s in steps)
    assert "chosen on the test set itself" in steps[3].text and "is optimistic" in steps[3].text
    assert "no held-out ID set" in steps[3].text and "did not keep the output-space ensemble" in steps[4].text
    assert not steps[1].broken_examples


def test_a_step_is_found_by_number_or_name():
    steps = lesson_steps(_curves())
    assert [step_index(steps, r) for r in (None, "1", "4", "6", "7", "output-space", "nonsense")] == \
        [0, 0, 3, 5, 0, 4, 0]


def test_a_link_to_a_step_that_does_not_exist_says_so():
    steps = lesson_steps(_curves())
    assert [step_note(steps, r) for r in (None, "1", "zero-shot", "4", "output-space")] == [None] * 5
    note = step_note(steps, "9")
    assert note.startswith("There is no step `9`: this lesson has steps 1 to 6") and "Showing step 1." in note
    assert "choosing-alpha" in note and step_note(steps, "nonsense") is not None


def test_generated_sentences_choose_their_article():
    assert [with_article(w) for w in ("arrow", "square", "hexagon", "unicycle", "hourglass", "European robin")] == \
        ["an arrow", "a square", "a hexagon", "a unicycle", "an hourglass", "a European robin"]
    assert broken_caption("Sketch", 12, "arrow") == "Sketch #12: an arrow"


def test_the_lesson_page_clicks_through_its_steps_with_their_alpha_and_link(monkeypatch, app_toml):
    monkeypatch.setenv("WISEFT_EXPERIMENT", str(app_toml))
    curves = run_sweep(ExperimentRuntime.from_path(app_toml)).curves()
    steps = lesson_steps(curves, "fine-tuned")
    at = AppTest.from_file(str(ROOT / "wiseft_explorer" / "ui" / "app" / "4_Lesson.py"), default_timeout=300)
    at.query_params["step"] = "2"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    for number in range(2, 7):
        step = steps[number - 1]
        assert any(s.value == f"{number}. {step.title}" for s in at.subheader)
        assert any(m.value == step.text for m in at.markdown)
        assert at.session_state["wiseft_alpha"] == step.alpha and at.query_params["step"] in (str(number), [str(number)])
        if number < 6:
            at.button(key="lesson_next").click().run()
            assert not at.exception, [e.value for e in at.exception]
    assert at.button(key="lesson_next").disabled
    at.button(key="lesson_back").click().run()
    assert any(s.value == f"5. {steps[4].title}" for s in at.subheader)
    assert not at.warning  # only a link to a missing step is warned about
    lost = AppTest.from_file(str(ROOT / "wiseft_explorer" / "ui" / "app" / "4_Lesson.py"), default_timeout=300)
    lost.query_params["step"] = "9"
    lost.run()
    assert [w.value for w in lost.warning] == [step_note(steps, "9")]
    assert any(s.value == f"1. {steps[0].title}" for s in lost.subheader)
    lost.button(key="lesson_next").click().run()
    assert not lost.warning


def test_the_last_step_predicts_a_drawing(monkeypatch, app_toml):
    class Drawn:
        image_data = np.zeros((280, 280, 4), dtype=np.uint8)
        image_data[60:200, 130:150] = (0, 0, 0, 255)

    fake = types.ModuleType("streamlit_drawable_canvas")
    fake.st_canvas = lambda **kw: Drawn()
    monkeypatch.setitem(sys.modules, "streamlit_drawable_canvas", fake)
    monkeypatch.setenv("WISEFT_EXPERIMENT", str(app_toml))
    at = AppTest.from_file(str(ROOT / "wiseft_explorer" / "ui" / "app" / "4_Lesson.py"), default_timeout=300)
    at.query_params["step"] = "try-it"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(m.value == "**your drawing**" for m in at.markdown) and len(at.dataframe) == 3
