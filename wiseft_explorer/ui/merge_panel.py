"""The Explorer's merge methods: the picker (whatever the registry lists), each method's controls drawn from its
parameters, its path and point beside WiSE-FT's, and its own views (Model Stock's t, LiNeS' depths, label-free α).

The choice lives in this session's state (state.method_choice), written by the widgets' callbacks before the page
runs, so the plots drawn above the picker already follow a moved control; the Gallery and Upload pages read it.
Working models are borrowed from the experiment's pool for each evaluation and given back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import streamlit as st

from ..presentation import merge_views
from . import state

if TYPE_CHECKING:  # torch: loaded only once a page asks for a method
    from ..core.merging.base import ParamSpec
    from ..evaluation.method_view import MethodOption
    from ..evaluation.runtime import ExperimentRuntime
    from ..evaluation.sweep_result import Predictions
    from ..results.curves import Curves

PICK_KEY = "merge_method_pick"
_MEMO_KEY = "wiseft_method_memo"  # this session's evaluated paths, by method, values and α
_MEMO_MAX = 8
LABEL_FREE_KEY = "merge_label_free"
BETA_PATH_KEY = "merge_lines_beta_path"
EXPERT_KEY = "merge_lines_expert"
OPEN_KEY = "merge_open"
_SOUP_CHOICES = ("all", "greedy")  # the uniform soup, and the greedy one chosen on the held-out set


def _widget_key(method: str, param: str) -> str:
    return f"merge_{method}_{param}"


def _store(method: str, specs: tuple[ParamSpec, ...]) -> None:
    """Callback: the session's choice from the picker and the method's widgets (those drawn so far)."""
    previous_name, previous = state.method_choice()
    params = previous if previous_name == method else {}
    for spec in specs:
        key = _widget_key(method, spec.name)
        if spec.name != "alpha" and key in st.session_state:
            params[spec.name] = st.session_state[key]
    state.set_method(method, params)


def _control(option: MethodOption, spec: ParamSpec, value: Any) -> Any:
    """One parameter's widget: a select box for choices, a number box for whole numbers, else a slider."""
    key, args = _widget_key(option.name, spec.name), (option.name, option.params)
    if spec.choices or spec.name == "members":
        choices = spec.choices or _SOUP_CHOICES
        return st.selectbox(spec.label, choices, index=choices.index(value) if value in choices else 0, key=key,
                            help=spec.help, on_change=_store, args=args)
    if spec.integer:
        return st.number_input(spec.label, int(spec.low or 0), int(spec.high or 2**31 - 1), int(value), key=key,
                               help=spec.help, on_change=_store, args=args)
    return st.slider(spec.label, float(spec.low or 0.0), float(spec.high or 1.0), float(value),
                     step=float(spec.step or 0.01), key=key, help=spec.help, on_change=_store, args=args)


def _pick() -> None:
    """Callback of the picker: the new method at its defaults."""
    state.set_method(st.session_state[PICK_KEY], {})


def open_picker() -> None:
    """Callback of the warm start's button: this session wants the merge methods (the models load)."""
    st.session_state[OPEN_KEY + "_done"] = True


def opened() -> bool:
    """Whether this session asked for the merge methods or uses one."""
    return bool(st.session_state.get(OPEN_KEY + "_done")) or needs_runtime()


def needs_runtime() -> bool:
    """Whether the Explorer draws anything of the merge methods before its plots (else the warm start stays
    torch-free until the page is drawn)."""
    return state.method_choice()[0] != state.PLAIN_METHOD or bool(st.session_state.get(LABEL_FREE_KEY))


def method_picker(runtime: ExperimentRuntime, curves: Curves, alpha: float) -> None:
    """The picker, the chosen method's controls and views, one line per method this experiment cannot use, and
    the label-free α table."""
    from ..evaluation.method_view import method_options

    options = method_options(runtime)
    usable = {o.name: o for o in options if o.reason is None}
    name, params = state.method_choice()
    if name not in usable:
        name, params = state.PLAIN_METHOD, {}
        state.set_method(name, params)
    st.session_state[PICK_KEY] = name
    st.selectbox("Merge method", list(usable), key=PICK_KEY, format_func=lambda n: usable[n].title,
                 on_change=_pick, help="Ways to build θ from θ₀ and the fine-tuned endpoints; α runs from θ₀ (0) "
                 "to the method's point (1).")
    option = usable[name]
    st.caption(option.summary)
    for spec in option.params:
        if spec.name not in ("alpha", "offsets"):  # LiNeS' offsets: the expert view's sliders (_method_views)
            _control(option, spec, params.get(spec.name, spec.default))
    for other in options:
        if other.reason is not None:
            st.caption(f"~~{other.title}~~: {other.reason}")
    _method_views(runtime, name, params, alpha)
    drawing = method_drawing(runtime, alpha) if name == "model-stock" else None
    if drawing is not None:
        st.caption(merge_views.landing_caption(drawing, curves))
    if st.toggle("Label-free α: mark them on the WiSE-FT path", key=LABEL_FREE_KEY,
                 help="Choices of α that need no labels (Model Stock's ratio, DaWin's entropy weighting), beside "
                      "the labelled ones."):
        _label_free_table(runtime, curves)


def _remembered(key: tuple, compute: Callable[[], Any], what: str) -> Any:
    """A value this session computed already for `key`, else `compute()` with a working model's spinner; None
    (after a warning, and back to WiSE-FT) when the method refuses its inputs."""
    from ..core.merging.base import MergeError

    memo: dict = st.session_state.setdefault(_MEMO_KEY, {})
    if key not in memo:
        try:
            with st.spinner(what):
                memo[key] = compute()
        except (MergeError, FileNotFoundError) as err:
            st.warning(f"{key[2]} cannot be used here: {err}. Pick another method or change its controls.")
            state.set_method(state.PLAIN_METHOD, {})
            return None
        while len(memo) > _MEMO_MAX:
            memo.pop(next(iter(memo)))
    return memo[key]


def _key(runtime: ExperimentRuntime, kind: str, alpha: float, *more: Any) -> tuple:
    name, params = state.method_choice()
    return (kind, str(runtime.experiment.path), name, tuple(sorted(params.items())), id(runtime), round(alpha, 6),
            *more)


def title() -> str:
    """The session's method's title."""
    from ..core.merging.registry import get_method

    name = state.method_choice()[0]
    return get_method(name).title or name


def method_drawing(runtime: ExperimentRuntime, alpha: float) -> merge_views.MethodDrawing | None:
    """The session's method's path and point (None for WiSE-FT itself), evaluated once per values and α."""
    from ..evaluation.method_view import PATH_IMAGES, method_curves

    name, params = state.method_choice()
    if name == state.PLAIN_METHOD:
        return None

    def compute() -> Curves:
        with runtime.borrow_working() as working:
            return method_curves(runtime, name, params, alpha, working)

    curves = _remembered(_key(runtime, "path", alpha), compute, f"Evaluating {name} along α…")
    from ..core.merging.registry import get_method

    values = ", ".join(f"{spec.label} = {params[spec.name]:g}" if isinstance(params[spec.name], float) else
                       f"{spec.label} = {params[spec.name]}" for spec in get_method(name).params if spec.name in params)
    return None if curves is None else merge_views.MethodDrawing(title(), curves, alpha, PATH_IMAGES, values)


def method_runtime(runtime: ExperimentRuntime) -> ExperimentRuntime:
    """The runtime along the session's method (the runtime itself for WiSE-FT): what Upload predicts with."""
    from ..evaluation.merging import with_method

    name, params = state.method_choice()
    return runtime if name == state.PLAIN_METHOD else with_method(runtime, name, params)


def method_predictions(runtime: ExperimentRuntime, set_name: str, alpha: float, max_images: int
                       ) -> Predictions | None:
    """One set's predictions by the session's method at α (None for WiSE-FT): the Gallery's α column."""
    from ..evaluation.sweep import evaluate_at

    if state.method_choice()[0] == state.PLAIN_METHOD:
        return None

    def compute() -> Predictions:
        with runtime.borrow_working() as working:
            return evaluate_at(method_runtime(runtime), alpha, working, [set_name], max_images=max_images)[set_name]

    return _remembered(_key(runtime, "set", alpha, set_name), compute, f"Evaluating {set_name} at α = {alpha:g}…")


def _method_views(runtime: ExperimentRuntime, name: str, params: dict, alpha: float) -> None:
    """Model Stock's t per tensor; LiNeS' α per depth and the toggle for its β path."""
    if name == "soup" and params.get("members") == "greedy":
        from ..evaluation.merging import endpoints, greedy_soup

        greedy = greedy_soup(runtime)
        members = [endpoints(runtime).inputs.names[i] for i in greedy.chosen.members]
        st.caption(f"Greedy soup: {', '.join(members)}, chosen on {greedy.held_out}" + (
            " — the ID test set itself (no [id_val]), so the choice is optimistic." if greedy.optimistic else "."))
    if name == "model-stock":
        from ..core.merging.model_stock import overall_ratio
        from ..evaluation.merging import endpoints
        from ..evaluation.method_view import stock_ratios

        st.plotly_chart(merge_views.ratio_figure(stock_ratios(runtime), overall_ratio(endpoints(runtime).inputs)),
                        key="stock_ratios", config={"displaylogo": False})
    elif name == "lines":
        from ..core.merging.lines import lines_alphas, parse_offsets
        from ..evaluation.method_view import depth_labels

        labels = depth_labels(runtime)
        line = [a - alpha for a in lines_alphas(alpha, float(params.get("beta", 0.0)), len(labels))]
        offsets = parse_offsets(str(params.get("offsets") or "")) or line
        if st.toggle("Expert view: one α offset per block group", key=EXPERT_KEY, value=bool(params.get("offsets")),
                     on_change=_store_offsets, args=(len(labels),), help="α(ℓ) = α + offset(ℓ) from the stem to "
                     "the head end, in place of β's straight line (which sets the sliders' starting values)."):
            for i, label in enumerate(labels):
                st.slider(label, -1.0, 1.0, float(offsets[i]), step=0.05, key=f"{EXPERT_KEY}_{i}",
                          on_change=_store_offsets, args=(len(labels),))
        st.plotly_chart(merge_views.depth_figure(labels, [alpha + o for o in offsets]), key="lines_depths",
                        config={"displaylogo": False})
        st.toggle("Show the path of β at this α", key=BETA_PATH_KEY,
                  help="LiNeS at the current α for β from −0.5 to 0.5, on the same sample (takes seconds).")


def _store_offsets(count: int) -> None:
    """Callback of the expert view: its sliders' offsets into the session's LiNeS values (none when it is off)."""
    name, params = state.method_choice()
    params.pop("offsets", None)
    if st.session_state.get(EXPERT_KEY):
        keys = [f"{EXPERT_KEY}_{i}" for i in range(count)]
        if all(k in st.session_state for k in keys):
            params["offsets"] = ",".join(f"{float(st.session_state[k]):g}" for k in keys)
        else:  # just switched on: start from β's line
            from ..core.merging.lines import lines_alphas

            params["offsets"] = ",".join(f"{a:g}" for a in lines_alphas(0.0, float(params.get("beta", 0.0)), count))
    state.set_method(name, params)


def markers(runtime: ExperimentRuntime, curves: Curves, alpha: float) -> list[merge_views.ExtraPath]:
    """What the toggles add to the ID-vs-shift plot: the label-free α markers, LiNeS' β path."""
    found = []
    if st.session_state.get(LABEL_FREE_KEY):
        from ..evaluation.method_view import label_free_alphas

        found += merge_views.label_free_paths(curves, [(c.label, c.alpha) for c in label_free_alphas(runtime)[0]])
    if state.method_choice()[0] == "lines" and st.session_state.get(BETA_PATH_KEY):
        from ..evaluation.method_view import beta_path

        with st.spinner("Evaluating LiNeS along β…"), runtime.borrow_working() as working:
            found.append(merge_views.beta_path(f"LiNeS β path at α = {alpha:g}", beta_path(runtime, alpha, working)))
    return found


def _label_free_table(runtime: ExperimentRuntime, curves: Curves) -> None:
    """Label-free α for WiSE-FT beside the labelled choices, with their distance from the labelled optimum."""
    from ..evaluation.method_view import label_free_alphas

    found, missing = label_free_alphas(runtime)
    st.table(merge_views.label_free_table(curves, [(c.label, c.alpha) for c in found]))
    st.caption("Δ: accuracy minus that at the best held-out α (the labelled optimum), in points, read on the "
               "WiSE-FT path at the nearest grid α." + "".join(
                   f" {c.label}: the per-image mix of the two models' outputs scores {100 * c.mix_top1:.1f}% ID."
                   for c in found if c.mix_top1 is not None) + "".join(f" {line}." for line in missing))
