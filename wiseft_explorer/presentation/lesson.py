"""A lesson in six steps, written from the experiment's own numbers: what a lecturer clicks through to tell WiSE-FT.

Every sentence that states a number takes it from the curves on screen (never from hard-coded figures), so the
lesson works on the built-in demo and on any experiment of the user's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..results.curves import AVG_ROW, PAPER_ALPHA, Curves, choose_alphas
from ..results.robustness import ReferenceLines, curve_robustness

VIEWS = ("id_vs_shift", "accuracy_vs_alpha", "canvas")
EFFECTIVE_ROBUSTNESS = "effective-robustness"  # the slug of the step that draws the testbed's line


@dataclass(frozen=True)
class LessonStep:
    """One step: its URL slug, title, the alpha it sets, which view it shows and what it says (markdown)."""

    slug: str
    title: str
    alpha: float
    view: str  # one of VIEWS
    text: str
    broken_examples: bool = False  # show images fine-tuning broke (zero-shot right, fine-tuned wrong)
    ensemble: bool = False  # draw the output-space ensemble beside the weight-space path
    markers: tuple[tuple[str, float], ...] = ()  # label-free α choices marked on the path (label, α)


@dataclass(frozen=True)
class MergeFacts:
    """What the soups step speaks from: how many endpoints share θ₀, the uniform soup's (ID, shift) accuracy on a
    sample (None when not evaluated), and the label-free α choices (label, α)."""

    endpoints: int
    soup: tuple[float, float] | None
    label_free: tuple[tuple[str, float], ...]


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _pts(value: float) -> str:
    return f"{100 * value:+.1f} points"


# Words whose first letter misleads: a vowel sounded as "y"/"w" ("a unicycle") or a silent h ("an hourglass").
_A_BEFORE = ("uni", "use", "usu", "uto", "eu", "one", "once", "ewe")
_AN_BEFORE = ("hour", "honest", "honour", "honor", "heir")


def with_article(noun: str) -> str:
    """The noun with its indefinite article, "a square" / "an arrow" (class names in generated sentences).

    The world's pretraining captions keep their own first-letter rule: changing it would change the demo's data.
    """
    word = noun.strip().lower()
    vowel = word[:1] in "aeiou" and not word.startswith(_A_BEFORE)
    return f"{'an' if vowel or word.startswith(_AN_BEFORE) else 'a'} {noun.strip()}"


def broken_caption(set_name: str, index: int, true_class: str) -> str:
    """The caption of an image fine-tuning broke: its set, its index and what it shows."""
    return f"{set_name} #{index}: {with_article(true_class)}"


def worst_shift(curves: Curves) -> str | None:
    """The shift set fine-tuning hurt most (largest drop from alpha 0 to 1), or None without shift sets."""
    zs, ft = curves.accuracies(0.0), curves.accuracies(1.0)
    return min(curves.shift_sets, key=lambda s: ft[s] - zs[s]) if curves.shift_sets else None


def lesson_steps(curves: Curves, endpoint: str | None = None, lines: ReferenceLines | None = None,
                 merging: MergeFacts | None = None) -> list[LessonStep]:
    """The six steps for an experiment's curves (of its chosen fine-tuned endpoint); one more with the robustness
    testbed's `lines` (ImageNet presets), whose step explains effective robustness, and one more with `merging`
    (soups and label-free choices), both before the last."""
    zs, ft = curves.accuracies(0.0), curves.accuracies(1.0)
    id_set, shifts = curves.id_set, curves.shift_sets
    ft_name = f"fine-tuning ({endpoint})" if endpoint else "fine-tuning"
    steps = [_zero_shot(curves, zs, id_set, shifts)]
    lost = {s: ft[s] - zs[s] for s in shifts}
    worst = worst_shift(curves)
    text = (f"Fine-tuning on the ID training data moves {id_set} from {_pct(zs[id_set])} to {_pct(ft[id_set])} "
            f"({_pts(ft[id_set] - zs[id_set])}).")
    if shifts:
        assert worst is not None  # worst_shift names one whenever there are shift sets
        text += (f" Under distribution shift it moves the average from {_pct(zs['avg_shifts'])} to "
                 f"{_pct(ft['avg_shifts'])} ({_pts(ft['avg_shifts'] - zs['avg_shifts'])}); {worst} changes most, "
                 f"{_pts(lost[worst])}. Below: two {worst} images the zero-shot model got right and {ft_name} broke.")
    steps.append(LessonStep("fine-tuning", f"What {ft_name} gains, and what it loses", 1.0, "id_vs_shift", text,
                            broken_examples=bool(shifts)))
    mid = curves.accuracies(PAPER_ALPHA)
    text = (f"WiSE-FT mixes the weights, θ_α = (1 − α)·θ_zero-shot + α·θ_fine-tuned, and the grey path shows every "
            f"α. At α = {PAPER_ALPHA:g}: {id_set} {_pct(mid[id_set])} ({_pts(mid[id_set] - zs[id_set])} over "
            f"zero-shot, {_pts(mid[id_set] - ft[id_set])} against fine-tuned)")
    text += (f", shifts {_pct(mid['avg_shifts'])} ({_pts(mid['avg_shifts'] - ft['avg_shifts'])} over fine-tuned). "
             if shifts else ". ")
    text += "One model, no extra cost at inference: the mix is just another set of weights."
    steps.append(LessonStep("weight-space-mix", "Mixing the weights", PAPER_ALPHA, "id_vs_shift", text))
    steps.append(_choosing(curves, id_set, shifts))
    steps.append(_output_space(curves, id_set))
    if lines is not None and lines.axes:
        steps.append(_effective_robustness(curves, lines))
    if merging is not None:
        steps.append(_soups(curves, merging, steps[3].alpha))
    chosen = steps[3].alpha
    steps.append(LessonStep(
        "try-it", "Try it yourself", chosen, "canvas",
        f"Draw a shape: zero-shot, WiSE-FT at α = {chosen:g} (the α chosen in step 4) and the fine-tuned model "
        "each predict it. A drawing is a distribution shift made by hand: see which model holds up."))
    return steps


def _effective_robustness(curves: Curves, lines: ReferenceLines) -> LessonStep:
    zs, mid, ft = (curve_robustness(curves, lines, a)[AVG_ROW] for a in (0.0, PAPER_ALPHA, 1.0))
    line = ("Hundreds of ImageNet models trained the standard way lie on one line: their shift accuracy follows "
            "from their ImageNet accuracy (the grey points and line, from the robustness testbed of Taori et al.). "
            "Better ImageNet accuracy alone buys only what the line predicts. ") if lines.source.is_testbed else (
        "Small classifiers trained the standard way on the world's ID photos alone (the grey points: the demo's "
        "family, trained from scratch) lie near one line: their shift accuracy follows from their ID accuracy. ")
    text = (line + "*Effective robustness* is how far a "
            "model sits above that line: its shift accuracy minus the line's value at its ID accuracy. "
            f"Averaged over the shifts: zero-shot {_pts(zs.value)}, WiSE-FT at α = {PAPER_ALPHA:g} "
            f"{_pts(mid.value)}, fine-tuned {_pts(ft.value)}. Zero-shot CLIP sits far above the line; fine-tuning "
            "moves a model towards it, and the weight-space mix keeps much of the distance while gaining ID "
            "accuracy: that is the paper's Figure 1.")
    return LessonStep(EFFECTIVE_ROBUSTNESS, "Above the line: effective robustness", PAPER_ALPHA, "id_vs_shift",
                      text)


def _soups(curves: Curves, facts: MergeFacts, chosen: float) -> LessonStep:
    id_set = curves.id_set
    text = ""
    if facts.soup is not None:
        text = (f"This experiment has {facts.endpoints} fine-tuned models from the same zero-shot weights. Averaging "
                f"all their weights, the *uniform soup*, scores {_pct(facts.soup[0])} on {id_set} and "
                f"{_pct(facts.soup[1])} on the shifts (on a sample of each set): still one model. ")
    text += (f"α itself can be chosen without labels. The labelled choice above is α = {chosen:g}; ")
    best = curves.accuracies(chosen)
    parts = []
    for label, alpha in facts.label_free:
        near = min(curves.alphas, key=lambda a: abs(a - alpha))
        at = curves.accuracies(near)
        parts.append(f"{label} gives α ≈ {alpha:.2f}, where {id_set} is {_pts(at[id_set] - best[id_set])} and the "
                     f"shifts {_pts(at[AVG_ROW] - best[AVG_ROW])} from it" if curves.shift_sets else
                     f"{label} gives α ≈ {alpha:.2f} ({id_set} {_pts(at[id_set] - best[id_set])} from it)")
    text += ("; ".join(parts) + ". The markers show where they land.") if parts else (
        "no label-free choice is available here yet (Model Stock's ratio needs two fine-tuned endpoints, DaWin the "
        "finished sweep).")
    return LessonStep("soups-label-free", "Soups, and α without labels", chosen, "id_vs_shift", text,
                      markers=facts.label_free)


def _zero_shot(curves: Curves, zs: dict[str, float], id_set: str, shifts: list[str]) -> LessonStep:
    text = (f"The zero-shot model has never seen a labelled training image: it scores each class by how well the "
            f"image matches prompts like \"a photo of a …\". It gets {_pct(zs[id_set])} of {id_set} right")
    if shifts:
        best = max(shifts, key=lambda s: zs[s])
        worst = min(shifts, key=lambda s: zs[s])
        text += (f", and {_pct(zs['avg_shifts'])} on average under the {len(shifts)} shifts: from "
                 f"{_pct(zs[best])} on {best} to {_pct(zs[worst])} on {worst}.")
    else:
        text += "."
    return LessonStep("zero-shot", "What zero-shot gets right and wrong", 0.0, "id_vs_shift",
                      text + " The star marks it: α = 0.")


def _choosing(curves: Curves, id_set: str, shifts: list[str]) -> LessonStep:
    choices = choose_alphas(curves)
    chosen = choices["best_id_val"] if curves.id_val else choices["best_id_test"]
    at = curves.accuracies(chosen)
    text = (f"Which α? Pick it on held-out ID data, never on the shifts you want to be robust to: the best α on "
            f"{curves.id_val or id_set} is {chosen:g}, where {id_set} scores {_pct(at[id_set])}")
    if shifts:
        oracle = choices["best_avg_shifts"]
        text += (f" and the shifts {_pct(at['avg_shifts'])}. Peeking at the shifts would pick α = {oracle:g} "
                 f"({_pct(curves.avg_shifts(oracle))}): that is the number you cannot know in practice.")
    else:
        text += "."
    if not curves.id_val:
        text += (" (This experiment has no held-out ID set, so α was chosen on the test set itself and its "
                 f"{_pct(at[id_set])} is optimistic: add [id_val] to do it right.)")
    return LessonStep("choosing-alpha", "Picking α on held-out data", chosen, "accuracy_vs_alpha", text)


def _output_space(curves: Curves, id_set: str) -> LessonStep:
    ensemble = curves.ensemble_curves()
    if ensemble is None:
        text = ("This sweep did not keep the output-space ensemble (it needs both ends of the α grid): run the full "
                "sweep to compare mixing outputs with mixing weights.")
    else:
        w, o = curves.accuracies(PAPER_ALPHA), ensemble.accuracies(PAPER_ALPHA)
        text = (f"Instead of mixing weights, one could run both models and mix their outputs, (1 − α)·logits₀ + "
                f"α·logits₁ (dashed). At α = {PAPER_ALPHA:g} that scores {_pct(o[id_set])} on {id_set}")
        if curves.shift_sets:
            text += f" and {_pct(o['avg_shifts'])} on the shifts"
        text += (f", against {_pct(w[id_set])}" + (f" and {_pct(w['avg_shifts'])}" if curves.shift_sets else "") +
                 " for the weight-space mix. The output ensemble needs both models at inference, twice the compute "
                 "and memory; θ_α is a single model.")
    return LessonStep("output-space", "Weight space against output space", PAPER_ALPHA, "id_vs_shift", text,
                      ensemble=True)


def step_note(steps: list[LessonStep], requested: str | None) -> str | None:
    """What to say when a link asks for a step that does not exist (`?step=9`): that step 1 is shown instead."""
    if requested is None or step_index(steps, requested) != 0 or requested in ("1", steps[0].slug):
        return None
    names = ", ".join(s.slug for s in steps)
    return (f"There is no step `{requested}`: this lesson has steps 1 to {len(steps)} (or by name: {names}). "
            "Showing step 1.")


def step_index(steps: list[LessonStep], requested: str | None) -> int:
    """The step a URL asks for (`?step=3` or `?step=choosing-alpha`), else the first."""
    if requested is None:
        return 0
    if requested.isdigit() and 1 <= int(requested) <= len(steps):
        return int(requested) - 1
    return next((i for i, s in enumerate(steps) if s.slug == requested), 0)
